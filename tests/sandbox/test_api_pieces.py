"""Patching, selectors and the store's watch semantics."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from sandbox.errors import ApiError
from sandbox.patching import json_patch, merge_patch, strategic_merge_patch
from sandbox.resources import NAMESPACES
from sandbox.selectors import labels_match, parse_field_selector, parse_label_selector
from sandbox.store import Store

POD_SPEC: dict[str, Any] = {"containers": [
    {"name": "app", "image": "web:1", "env": [{"name": "A", "value": "1"}]},
    {"name": "sidecar", "image": "proxy:1"},
]}


def test_strategic_merge_merges_containers_by_name() -> None:
    patch = {"$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
             "containers": [{"name": "app", "image": "web:2",
                             "env": [{"name": "B", "value": "2"}]}]}
    merged = strategic_merge_patch(POD_SPEC, patch)
    app, sidecar = merged["containers"]
    assert app["image"] == "web:2" and sidecar == {"name": "sidecar", "image": "proxy:1"}
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    removed = strategic_merge_patch(POD_SPEC, {"containers": [
        {"name": "sidecar", "$patch": "delete"}]})
    assert [c["name"] for c in removed["containers"]] == ["app"]
    assert POD_SPEC["containers"][0]["image"] == "web:1"  # the input is untouched


def test_merge_patch_replaces_lists_and_deletes_with_null() -> None:
    merged = merge_patch({"spec": POD_SPEC, "keep": 1}, {
        "spec": {"containers": [{"name": "only", "image": "x"}]}, "keep": None})
    assert merged == {"spec": {"containers": [{"name": "only", "image": "x"}]}}


def test_json_patch_operations() -> None:
    doc = {"metadata": {"annotations": {"a": "1"}}, "spec": {"items": [1, 2]}}
    result = json_patch(doc, [
        {"op": "replace", "path": "/metadata/annotations", "value": {"b": "2"}},
        {"op": "add", "path": "/spec/items/-", "value": 3},
        {"op": "remove", "path": "/spec/items/0"},
        {"op": "add", "path": "/metadata/labels", "value": {"x/y": "z"}},
        {"op": "copy", "from": "/metadata/labels/x~1y", "path": "/spec/copied"},
    ])
    assert result == {"metadata": {"annotations": {"b": "2"}, "labels": {"x/y": "z"}},
                      "spec": {"items": [2, 3], "copied": "z"}}
    with pytest.raises(ApiError) as failed:
        json_patch(doc, [{"op": "test", "path": "/spec/items/0", "value": 9}])
    assert failed.value.code == 422
    with pytest.raises(ApiError) as not_a_list:
        json_patch(doc, {"spec": {}})
    assert not_a_list.value.code == 400


def test_label_and_field_selectors() -> None:
    labels = {"app": "web", "track": "canary"}
    for selector, expected in [("app=web", True), ("app==web,track!=stable", True),
                               ("track in (canary, blue)", True), ("track notin (canary)", False),
                               ("app", True), ("!missing", True), ("missing", False)]:
        assert labels_match(parse_label_selector(selector), labels) is expected, selector
    match = parse_field_selector("metadata.name=web,status.phase!=Failed")
    assert match({"metadata": {"name": "web"}, "status": {"phase": "Running"}})
    assert not match({"metadata": {"name": "api"}, "status": {"phase": "Running"}})


async def test_watch_resumes_from_a_resource_version() -> None:
    store = Store()
    store.create(NAMESPACES, {"metadata": {"name": "a", "labels": {"team": "x"}}})
    since = store.resource_version
    store.create(NAMESPACES, {"metadata": {"name": "b", "labels": {"team": "x"}}})
    moved = store.get(NAMESPACES, None, "a")
    moved["metadata"]["labels"]["team"] = "y"
    store.replace(NAMESPACES, moved)
    selector = parse_label_selector("team=x")
    watcher = store.watch(NAMESPACES, None, lambda o: labels_match(
        selector, o["metadata"].get("labels")), since)
    events = []
    while not watcher.queue.empty():
        event = await asyncio.wait_for(watcher.queue.get(), 1)
        assert event is not None
        events.append((event["type"], event["object"]["metadata"]["name"]))
    # "a" left the selector: a watcher of team=x sees it deleted.
    assert events == [("ADDED", "b"), ("DELETED", "a")]
    unchanged = store.replace(NAMESPACES, store.get(NAMESPACES, None, "b"))
    assert unchanged["metadata"]["resourceVersion"] == store.get(
        NAMESPACES, None, "b")["metadata"]["resourceVersion"]


def test_watch_from_a_compacted_version_is_gone() -> None:
    store = Store()
    store._log = deque(maxlen=2)  # compact aggressively
    for name in ("a", "b", "c", "d"):
        store.create(NAMESPACES, {"metadata": {"name": name}})
    with pytest.raises(ApiError) as gone:
        store.watch(NAMESPACES, None, lambda _o: True, "1")
    assert gone.value.code == 410 and gone.value.reason == "Expired"
