"""Discovery documents: how kubectl and client libraries learn what is served."""

from __future__ import annotations

from typing import Any

from sandbox.resources import ALL_TYPES, ResourceType

Obj = dict[str, Any]


def version(git_version: str) -> Obj:
    major, minor = git_version.lstrip("v").split(".")[:2]
    return {"major": major, "minor": minor, "gitVersion": git_version,
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2025-04-22T16:00:00Z", "goVersion": "go1.23.8", "compiler": "gc",
            "platform": "linux/amd64"}


def core_versions(server_address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}]}


def _groups() -> list[str]:
    return sorted({t.group for t in ALL_TYPES if t.group})


def group_list() -> Obj:
    groups = []
    for group in _groups():
        gv = {"groupVersion": f"{group}/v1", "version": "v1"}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(name: str) -> Obj | None:
    if name not in _groups():
        return None
    gv = {"groupVersion": f"{name}/v1", "version": "v1"}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": [gv],
            "preferredVersion": gv}


def _entry(rt: ResourceType) -> Obj:
    entry: Obj = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                  "kind": rt.kind, "verbs": list(rt.verbs)}
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    return entry


def _sub_entry(rt: ResourceType, sub: str) -> Obj:
    verbs = ["get"] if sub == "log" else ["get", "patch", "update"]
    entry: Obj = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                  "kind": rt.kind, "verbs": verbs}
    if sub == "scale":
        # The scale client resolves the Scale kind's group/version from this entry.
        entry.update(group="autoscaling", version="v1", kind="Scale")
    return entry


def resource_list(group_name: str, version_name: str) -> Obj | None:
    types = [t for t in ALL_TYPES if t.group == group_name and t.version == version_name]
    if not types:
        return None
    resources: list[Obj] = []
    for rt in types:
        resources.append(_entry(rt))
        resources.extend(_sub_entry(rt, sub) for sub in rt.subresources)
    gv = f"{group_name}/{version_name}" if group_name else version_name
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


def _gv_path(group_name: str) -> str:
    return f"apis/{group_name}/v1" if group_name else "api/v1"


def openapi_v3_root(version_hash: str) -> Obj:
    """The OpenAPI v3 index; kubectl only asks it whether fieldValidation is supported."""
    groups = sorted({t.group for t in ALL_TYPES})
    return {"paths": {_gv_path(g): {"serverRelativeURL": f"/openapi/v3/{_gv_path(g)}"
                                                          f"?hash={version_hash}"}
                      for g in groups}}


def openapi_v3_group(path: str, git_version: str) -> Obj | None:
    """A minimal per-group document: PATCH operations that accept fieldValidation.

    Enough for kubectl's query-parameter check, so ``kubectl create -f`` and
    ``apply -f`` leave validation to the server instead of demanding full schemas.
    """
    types = [t for t in ALL_TYPES if _gv_path(t.group) == path]
    if not types:
        return None
    paths: Obj = {}
    for rt in types:
        prefix = f"/{path}/namespaces/{{namespace}}" if rt.namespaced else f"/{path}"
        paths[f"{prefix}/{rt.plural}/{{name}}"] = {"patch": {
            "operationId": f"patch{rt.kind}",
            "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version,
                                                "kind": rt.kind},
            "parameters": [{"name": name, "in": "query", "schema": {"type": "string"}}
                           for name in ("dryRun", "fieldManager", "fieldValidation")],
            "responses": {"200": {"description": "OK"}},
        }}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": git_version},
            "paths": paths, "components": {"schemas": {}}}
