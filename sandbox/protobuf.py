"""Just enough Kubernetes protobuf to read what ``kubectl create <kind>`` sends.

kubectl's imperative generators (``create deployment``, ``create service``,
``create namespace``) POST ``application/vnd.kubernetes.protobuf``. This reads
that envelope for Deployments, Services and Namespaces with a hand-written map
of the field numbers those commands use; other fields are dropped, which only
loses what those commands never set. Everything else the sandbox answers in
JSON, which every client accepts.
"""

from __future__ import annotations

from typing import Any

from sandbox.errors import ApiError

_MAGIC = b"k8s\x00"
# A schema maps field number -> (JSON name, kind, nested schema). Kinds: str, int
# (omitted when zero: a plain Go field), ptr (kept even when zero: a Go pointer),
# bool, msg, msgs (repeated message), strs (repeated string), map, ios (IntOrString).
Schema = dict[int, tuple[str, str, "Schema | None"]]

_META: Schema = {1: ("name", "str", None), 2: ("generateName", "str", None),
                 3: ("namespace", "str", None), 11: ("labels", "map", None),
                 12: ("annotations", "map", None), 14: ("finalizers", "strs", None)}
_SELECTOR: Schema = {1: ("matchLabels", "map", None), 2: ("matchExpressions", "msgs", {
    1: ("key", "str", None), 2: ("operator", "str", None), 3: ("values", "strs", None)})}
_CONTAINER: Schema = {
    1: ("name", "str", None), 2: ("image", "str", None), 3: ("command", "strs", None),
    4: ("args", "strs", None), 5: ("workingDir", "str", None),
    6: ("ports", "msgs", {1: ("name", "str", None), 2: ("hostPort", "int", None),
                          3: ("containerPort", "int", None), 4: ("protocol", "str", None),
                          5: ("hostIP", "str", None)}),
    7: ("env", "msgs", {1: ("name", "str", None), 2: ("value", "str", None)}),
    13: ("terminationMessagePath", "str", None), 14: ("imagePullPolicy", "str", None),
    20: ("terminationMessagePolicy", "str", None),
}
_POD_TEMPLATE: Schema = {1: ("metadata", "msg", _META), 2: ("spec", "msg", {
    2: ("containers", "msgs", _CONTAINER), 3: ("restartPolicy", "str", None),
    4: ("terminationGracePeriodSeconds", "ptr", None), 6: ("dnsPolicy", "str", None),
    7: ("nodeSelector", "map", None), 8: ("serviceAccountName", "str", None),
    19: ("schedulerName", "str", None), 20: ("initContainers", "msgs", _CONTAINER)})}
_DEPLOYMENT_SPEC: Schema = {
    1: ("replicas", "ptr", None), 2: ("selector", "msg", _SELECTOR),
    3: ("template", "msg", _POD_TEMPLATE),
    4: ("strategy", "msg", {1: ("type", "str", None), 2: ("rollingUpdate", "msg", {
        1: ("maxUnavailable", "ios", None), 2: ("maxSurge", "ios", None)})}),
    5: ("minReadySeconds", "int", None), 6: ("revisionHistoryLimit", "ptr", None),
    7: ("paused", "bool", None), 9: ("progressDeadlineSeconds", "ptr", None),
}
_SERVICE_SPEC: Schema = {
    1: ("ports", "msgs", {1: ("name", "str", None), 2: ("protocol", "str", None),
                          3: ("port", "int", None), 4: ("targetPort", "ios", None),
                          5: ("nodePort", "int", None)}),
    2: ("selector", "map", None), 3: ("clusterIP", "str", None), 4: ("type", "str", None),
}
_KINDS: dict[str, Schema] = {
    "Deployment": {1: ("metadata", "msg", _META), 2: ("spec", "msg", _DEPLOYMENT_SPEC)},
    "Service": {1: ("metadata", "msg", _META), 2: ("spec", "msg", _SERVICE_SPEC)},
    "Namespace": {1: ("metadata", "msg", _META)},
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            out.append((number, data[pos:pos + size]))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4  # fixed-width numbers: none in our schemas
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _decode(data: bytes, schema: Schema) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, raw in _fields(data):
        if number not in schema:
            continue
        name, kind, nested = schema[number]
        if kind in ("int", "ptr", "bool") and isinstance(raw, int):
            value: Any = bool(raw) if kind == "bool" else _signed(raw)
            if value or kind == "ptr":
                obj[name] = value
        elif isinstance(raw, bytes):
            if kind == "str" and raw:
                obj[name] = raw.decode()
            elif kind == "strs":
                obj.setdefault(name, []).append(raw.decode())
            elif kind == "msg" and nested is not None:
                obj[name] = _decode(raw, nested)
            elif kind == "msgs" and nested is not None:
                obj.setdefault(name, []).append(_decode(raw, nested))
            elif kind == "map":
                entry = dict(_fields(raw))
                key, val = entry.get(1, b""), entry.get(2, b"")
                assert isinstance(key, bytes) and isinstance(val, bytes)
                obj.setdefault(name, {})[key.decode()] = val.decode()
            elif kind == "ios":
                parts = dict(_fields(raw))
                text, int_value = parts.get(3, b""), parts.get(2, 0)
                if parts.get(1) == 1 and isinstance(text, bytes):
                    obj[name] = text.decode()
                elif isinstance(int_value, int):
                    obj[name] = _signed(int_value)
    return obj


def decode_object(body: bytes) -> dict[str, Any]:
    """A protobuf-encoded object as the JSON dict a client would have sent."""
    try:
        if not body.startswith(_MAGIC):
            raise ValueError("missing the k8s protobuf prefix")
        envelope = dict(_fields(body[len(_MAGIC):]))
        type_meta = envelope.get(1, b"")
        raw = envelope.get(2, b"")
        assert isinstance(type_meta, bytes) and isinstance(raw, bytes)
        names = dict(_fields(type_meta))
        api_version = names.get(1, b"")
        kind = names.get(2, b"")
        assert isinstance(api_version, bytes) and isinstance(kind, bytes)
        schema = _KINDS.get(kind.decode())
        if schema is None:
            raise ApiError(415, "UnsupportedMediaType",
                           f"protobuf bodies are accepted for {', '.join(_KINDS)} only; "
                           "send application/json")
        obj = _decode(raw, schema)
    except (ValueError, AssertionError, UnicodeDecodeError) as exc:
        raise ApiError(400, "BadRequest", f"cannot decode protobuf body: {exc}") from exc
    return {"apiVersion": api_version.decode(), "kind": kind.decode(), **obj}
