"""The three PATCH flavours a Kubernetes API server accepts.

* JSON Patch (RFC 6902) — what ``kubectl rollout undo`` sends.
* JSON Merge Patch (RFC 7386) — what ``kubectl scale`` sends to ``/scale``.
* Strategic Merge Patch — what ``kubectl set image`` and ``kubectl patch`` send:
  a merge patch where some lists merge by a key (containers by name, ...)
  and ``$patch`` / ``$setElementOrder`` / ``$retainKeys`` directives apply.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.errors import ApiError, bad_request

# Lists that merge element-wise in the strategic flavour, keyed by field name.
_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name",
    "ports": "containerPort", "conditions": "type", "ownerReferences": "uid",
    "hostAliases": "ip", "volumeDevices": "devicePath", "topologySpreadConstraints":
    "topologyKey",
}


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _decode_pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise _unprocessable(f"the server rejected our request due to an error in our "
                                 f"request: doc is missing path: \"{path}\"")
    return doc


def _add(doc: Any, parts: list[str], value: Any, path: str, replace: bool) -> Any:
    if not parts:
        return copy.deepcopy(value)
    parent = _resolve(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise _unprocessable(f"doc is missing key: {path}")
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = copy.deepcopy(value)
            else:
                parent.insert(int(last), copy.deepcopy(value))
        else:
            raise _unprocessable(f"index out of range in path: {path}")
    else:
        raise _unprocessable(f"doc is missing path: {path}")
    return doc


def _remove(doc: Any, parts: list[str], path: str) -> Any:
    parent = _resolve(doc, parts[:-1], path)
    last = parts[-1] if parts else ""
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise _unprocessable(f"doc is missing path: {path}")


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        # A real server fails to decode an object as a patch list with this 400.
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid JSON patch operation: {op!r}")
        path = op["path"]
        parts = _decode_pointer(path)
        kind = op["op"]
        if kind == "add":
            doc = _add(doc, parts, op.get("value"), path, replace=False)
        elif kind == "replace":
            doc = _add(doc, parts, op.get("value"), path, replace=True)
        elif kind == "remove":
            _remove(doc, parts, path)
        elif kind in ("move", "copy"):
            source_parts = _decode_pointer(op["from"])
            value = (_remove(doc, source_parts, op["from"]) if kind == "move"
                     else copy.deepcopy(_resolve(doc, source_parts, op["from"])))
            doc = _add(doc, parts, value, path, replace=False)
        elif kind == "test":
            if _resolve(doc, parts, path) != op.get("value"):
                raise _unprocessable(f"testing value {path} failed")
        else:
            raise bad_request(f"unexpected JSON patch operation {kind!r}")
    return doc


def _merge_list(field: str, target: list[Any], patch: list[Any],
                order: list[Any] | None) -> list[Any]:
    key = _MERGE_KEYS.get(field)
    if key is None or not all(isinstance(e, dict) for e in [*target, *patch]):
        return [e for e in copy.deepcopy(patch) if not (isinstance(e, dict) and "$patch" in e)]
    if any(isinstance(e, dict) and e.get("$patch") == "replace" for e in patch):
        return [copy.deepcopy(e) for e in patch if e.get("$patch") != "replace"]
    result = copy.deepcopy(target)
    for element in patch:
        index = next((i for i, e in enumerate(result) if e.get(key) == element.get(key)), None)
        if element.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(strategic_merge_patch({}, element))
        else:
            result[index] = strategic_merge_patch(result[index], element)
    if order:
        # $setElementOrder lists the merge keys in the order the client wants.
        rank = {e.get(key): i for i, e in enumerate(order) if isinstance(e, dict)}
        result.sort(key=lambda e: rank.get(e.get(key), len(rank)))
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [v for v in result.get(name) or [] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value,
                                      patch.get(f"$setElementOrder/{key}"))
        elif isinstance(value, list):
            result[key] = _merge_list(key, [], value, None)
        else:
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


PATCH_TYPES = {
    "application/json-patch+json": json_patch,
    "application/merge-patch+json": merge_patch,
    "application/strategic-merge-patch+json": strategic_merge_patch,
}
