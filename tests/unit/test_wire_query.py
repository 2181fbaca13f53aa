"""The pure parts of the wire layer: conditional-header values and their evaluation (§1.7),
``$select`` checked against the spec's models and applied (§7.4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hybatch.api.wire import parse_etags, parse_http_date, resource_model
from hybatch.core.commands import Precondition
from hybatch.core.context import unmet_condition
from hybatch.core.errors import DomainError
from hybatch.odata.errors import SelectError
from hybatch.odata.select import parse_select, project
from hybatch.schema import OPERATIONS, BatchJob, BatchNode, BatchPool, BatchTask

# ----------------------------------------------------------------------------- entity tags


@pytest.mark.parametrize(("sent", "parsed"), [
    ('"0x8D1"', "0x8D1"),            # 15.x quotes
    ("0x8D1", "0x8D1"),              # 14.x sends it bare
    ("'0x8D1'", "0x8D1"),            # 15.x passes single-quoted tags through
    ('W/"0x8D1"', "0x8D1"),          # weak: compared as its strong twin
    ("w/0x8D1", "0x8D1"),
    ("*", "*"),
    ('"*"', "*"),
    (' "a" , W/"b",c ', "a,b,c"),     # a list
])
def test_entity_tags_are_unquoted(sent: str, parsed: str) -> None:
    assert parse_etags("If-Match", sent) == parsed


@pytest.mark.parametrize("sent", ["", '""', "a b", '"a"b"', "a,,b", "W/", '"\x01"'])
def test_malformed_entity_tags_are_invalid_header_values(sent: str) -> None:
    with pytest.raises(DomainError) as caught:
        parse_etags("If-None-Match", sent)
    assert caught.value.code == "InvalidHeaderValue"
    assert caught.value.details["HeaderName"] == "If-None-Match"


T = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)


@pytest.mark.parametrize("sent", [
    "Sun, 06 Nov 1994 08:49:37 GMT",    # RFC 1123 (what the SDKs send)
    "Sunday, 06-Nov-94 08:49:37 GMT",   # RFC 850
    "Sun Nov  6 08:49:37 1994",         # asctime: no zone, UTC (not the server's zone)
    "Sun, 06 Nov 1994 10:49:37 +0200",
    "Sun, 06 Nov 1994 08:49:37 -0000",
])
def test_http_dates_in_every_form(sent: str) -> None:
    assert parse_http_date("If-Modified-Since", sent) == T.timestamp()


@pytest.mark.parametrize("sent", ["yesterday", "2024-01-01T00:00:00Z", "", "Sun, 32 Nov 1994"])
def test_malformed_http_dates(sent: str) -> None:
    with pytest.raises(DomainError) as caught:
        parse_http_date("If-Unmodified-Since", sent)
    assert caught.value.code == "InvalidHeaderValue"


# ----------------------------------------------------------------------------- evaluation

ETAG = "0x8D1"
MODIFIED = datetime(2024, 5, 8, 8, 49, 37, 654321, tzinfo=UTC)  # header shows ...:37
SECOND = MODIFIED.replace(microsecond=0).timestamp()


@pytest.mark.parametrize(("pre", "unmet"), [
    (Precondition(), None),
    (Precondition(if_match=ETAG), None),
    (Precondition(if_match="*"), None),
    (Precondition(if_match="0xOLD," + ETAG), None),
    (Precondition(if_match="0xOLD"), "If-Match"),
    (Precondition(if_match="0x8d1"), "If-Match"),  # entity tags are case-sensitive
    (Precondition(if_none_match="0xOLD"), None),
    (Precondition(if_none_match=ETAG), "If-None-Match"),
    (Precondition(if_none_match="*"), "If-None-Match"),
    # dates compare at whole seconds: the Last-Modified a client copies is not modified since
    (Precondition(if_modified_since=SECOND), "If-Modified-Since"),
    (Precondition(if_modified_since=SECOND - 1), None),
    (Precondition(if_unmodified_since=SECOND), None),
    (Precondition(if_unmodified_since=SECOND - 1), "If-Unmodified-Since"),
])
def test_unmet_condition(pre: Precondition, unmet: str | None) -> None:
    assert unmet_condition(ETAG, MODIFIED, pre) == unmet


def test_dates_are_ignored_for_a_resource_without_a_time() -> None:
    pre = Precondition(if_modified_since=(MODIFIED + timedelta(days=1)).timestamp())
    assert unmet_condition(ETAG, None, pre) is None


# ----------------------------------------------------------------------------- $select


def test_select_top_level_names_any_case_in_spec_spelling() -> None:
    assert parse_select("id, STATE,executionInfo", BatchTask) == {
        "id": None, "state": None, "executionInfo": None}


def test_select_nested_paths_and_overlaps() -> None:
    assert parse_select("executionInfo/exitCode,executionInfo/result", BatchTask) == {
        "executionInfo": {"exitCode": None, "result": None}}
    # the whole object wins over a part of it, in either order
    assert parse_select("executionInfo/exitCode,executionInfo", BatchTask) == {
        "executionInfo": None}
    assert parse_select("executionInfo,executionInfo/exitCode", BatchTask) == {
        "executionInfo": None}
    assert parse_select("resizeErrors/code", BatchPool) == {"resizeErrors": {"code": None}}
    assert parse_select("poolInfo/autoPoolSpecification/pool/vmSize", BatchJob) == {
        "poolInfo": {"autoPoolSpecification": {"pool": {"vmSize": None}}}}


def test_select_star_is_everything() -> None:
    assert parse_select("*", BatchNode) is None
    assert parse_select("id,*", BatchNode) is None


@pytest.mark.parametrize(("text", "fragment"), [
    ("nope", "'nope' is not a property of BatchTask"),
    ("id,displayname,colour", "'colour'"),
    ("executionInfo/nope", "'nope' is not a property of executionInfo"),
    ("id/length", "'id' is not an object"),
    ("executionInfo//exitCode", "empty path segment"),
    (",", "names no property"),
    ("x" * 9000, "longer than"),
])
def test_select_errors(text: str, fragment: str) -> None:
    with pytest.raises(SelectError) as caught:
        parse_select(text, BatchTask)
    assert fragment in caught.value.message


def test_project_keeps_the_selected_parts_in_body_order() -> None:
    body = {"id": "t", "url": "u", "state": "completed",
            "executionInfo": {"exitCode": 3, "retryCount": 1, "result": "failure"},
            "resizeErrors": [{"code": "A", "message": "m"}, {"code": "B"}]}
    selected = {"state": None, "id": None, "executionInfo": {"exitCode": None},
                "resizeErrors": {"code": None}, "absent": None}
    assert project(body, selected) == {  # type: ignore[arg-type]
        "id": "t", "state": "completed", "executionInfo": {"exitCode": 3},
        "resizeErrors": [{"code": "A"}, {"code": "B"}]}
    assert list(project(body, selected)) == ["id", "state", "executionInfo",  # type: ignore[arg-type]
                                             "resizeErrors"]


def test_every_operation_taking_select_has_a_model_to_check_it_against() -> None:
    """So $select is validated for every list/get the spec allows it on, including those
    (job schedules, extensions, subtasks...) built later."""
    with_select = [op for op in OPERATIONS if op.has_select]
    assert len(with_select) >= 14
    for op in with_select:
        model = resource_model(op)
        assert model is not None and model.model_fields, op.operation_id
        assert not model.__name__.endswith("ListResult"), op.operation_id  # the item, not the page
