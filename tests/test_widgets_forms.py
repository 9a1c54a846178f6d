"""Every task schema of fractal-tasks-core 2.1.0 and 1.3.4 through the arguments form.

Defaults in (a new form's value holds each property's default), edited values out (a full
valid value set in the form comes back unchanged, and each field edited through its widget
comes out at its path), invalid values refused (bad text, out-of-range numbers, broken
patterns, missing required values: an error next to the field and `args()` raises).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import pytest
from jsonschema.validators import validator_for

from fractal_jupyter.schemas.workflow import RESERVED_ARGUMENTS
from fractal_jupyter.widgets.forms import (
    MISSING,
    ArgsForm,
    ArrayField,
    BoolField,
    ChoiceField,
    DictField,
    InvalidArguments,
    NullableField,
    TextField,
    UnionField,
    resolve,
)
from tests.support.layouts import clipping_risks, descendants
from tests.support.tasks_core import tasks_core_manifest


def _schemas() -> list[Any]:
    cases = []
    for version in ("2.1.0", "1.3.4"):
        for task in tasks_core_manifest(version)["task_list"]:
            for part in ("non_parallel", "parallel"):
                schema = task.get(f"args_schema_{part}")
                if schema:
                    cases.append(pytest.param(schema, id=f"{version}-{task['name']}-{part}"))
    return cases


SCHEMAS = _schemas()


def test_all_manifest_schemas_are_covered() -> None:
    assert len(SCHEMAS) == 27  # 2.1.0: 9 tasks, 1.3.4: 10 tasks; compound ones have two


def sample(schema: Any, root: dict[str, Any]) -> Any:
    """A valid value for `schema`, unlike its default, every optional part given."""
    schema = resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][-1]
    for word in ("oneOf", "anyOf"):
        if schema.get(word):
            branches = [resolve(b, root) for b in schema[word]]
            real = [b for b in branches if b.get("type") != "null"]
            return sample(real[-1], root)
    kind = schema.get("type")
    default = schema.get("default")
    if kind == "string":
        return f"{default}-x" if isinstance(default, str) else "edited"
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1000))
        high = schema.get("maximum", 1000)
        value = (low + high) / 2 if kind == "number" else (low + high) // 2 + 1
        if value == default:
            value = value + 1 if kind == "integer" else value / 2
        return value
    if kind == "boolean":
        return not default
    if kind == "array":
        return [sample(schema.get("items", {}), root)]
    if kind == "object" or "properties" in schema:
        if schema.get("properties"):
            return {k: sample(v, root) for k, v in schema["properties"].items()}
        extra = schema.get("additionalProperties")
        return {"key1": sample(extra, root)} if isinstance(extra, dict) else {"any": 1}
    return {"any": [1, "two"]}


def _visible(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema["properties"].items() if k not in RESERVED_ARGUMENTS}


@pytest.mark.parametrize("schema", SCHEMAS)
def test_defaults_in(schema: dict[str, Any]) -> None:
    form = ArgsForm(schema)
    value = form.value
    properties = _visible(schema)
    defaults = {k: p["default"] for k, p in properties.items() if "default" in p}
    for key, default in defaults.items():
        assert value[key] == default, key
    # Beyond the defaults, only required containers appear (an object with its own defaults,
    # an empty list or dict); optional fields without a default are left out.
    for key in set(value) - set(defaults):
        assert key in schema.get("required", []), key
        assert isinstance(value[key], dict | list), key
    assert not set(value) & RESERVED_ARGUMENTS
    # The errors of a fresh form are exactly the required values still to give.
    for error in form.errors:
        assert error.message == "required", error
    # Each defaulted text field shows its default.
    for key, default in defaults.items():
        field = form.field(key)
        if isinstance(field, TextField):
            shown = default if isinstance(default, str) else str(default)
            assert field.input.value == shown


@pytest.mark.parametrize("schema", SCHEMAS)
def test_full_value_round_trips(schema: dict[str, Any]) -> None:
    full = {k: sample(v, schema) for k, v in _visible(schema).items()}
    checker = dict(schema, required=[])
    assert not list(validator_for(checker)(checker).iter_errors(full))  # a sane sample
    form = ArgsForm(schema)
    form.value = full
    assert form.value == full
    assert form.errors == []
    assert form.args() == full
    # A new form opened on the value shows the same.
    assert ArgsForm(schema, full).value == full


def _edit(field: Any) -> bool:
    """Change a leaf field through its widget to another valid value; False if not a leaf."""
    if isinstance(field, TextField):
        current = field.get()
        if field.kind == "string":
            field.input.value = (current or "") + "_2"
        elif field.kind == "integer":
            high = field.schema.get("maximum")
            field.input.value = str(
                current - 1 if high is not None and current >= high else current + 1
            )
        else:
            field.input.value = str(current / 2 if current else 0.5)
        return True
    if isinstance(field, BoolField):
        field.input.value = not field.get()
        return True
    if isinstance(field, ChoiceField) and len(field.values) > 1:
        field.input.value = (field.input.value + 1) % len(field.values)
        return True
    return False


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@pytest.mark.parametrize("schema", SCHEMAS)
def test_edited_values_out(schema: dict[str, Any]) -> None:
    full = {k: sample(v, schema) for k, v in _visible(schema).items()}
    form = ArgsForm(schema, full)
    edited = 0
    for path, field in list(form.fields()):
        before = form.value
        if not _edit(field):
            continue
        edited += 1
        after = form.value
        assert _at(after, path) == field.get() != _at(before, path), path
        assert form.errors == [], (path, [str(e) for e in form.errors])
    assert edited or not _visible(schema)


@pytest.mark.parametrize("schema", SCHEMAS)
def test_invalid_values_refused(schema: dict[str, Any]) -> None:
    full = {k: sample(v, schema) for k, v in _visible(schema).items()}
    form = ArgsForm(schema, full)
    refused = 0

    def expect_refused(path: tuple[Any, ...], field: Any) -> None:
        nonlocal refused
        assert any(e.path == path for e in form.errors), (path, form.errors)
        assert field.error_text.strip(), path  # shown next to the field
        with pytest.raises(InvalidArguments):
            form.args()
        refused += 1

    for path, field in list(form.fields()):
        if isinstance(field, TextField):
            good = field.input.value
            if field.kind != "string":
                field.input.value = "twelve"
                expect_refused(path, field)
                if field.kind == "integer":
                    field.input.value = "1.5"
                    expect_refused(path, field)
                if "maximum" in field.schema:
                    field.input.value = str(field.schema["maximum"] + 1)
                    expect_refused(path, field)
                if "minimum" in field.schema or "exclusiveMinimum" in field.schema:
                    low = field.schema.get("minimum", field.schema.get("exclusiveMinimum"))
                    field.input.value = str(low - 1)
                    expect_refused(path, field)
            elif "pattern" in field.schema:
                field.input.value = "no placeholder"
                expect_refused(path, field)
            elif field.required and isinstance(field.key, str):
                # (a nullable field's text box is not required: empty is null)
                field.input.value = ""
                expect_refused(path, field)
            field.input.value = good
            assert form.errors == [], path
        elif isinstance(field, DictField) and field.rows:
            field.add_entry(field.rows[0][2].value)  # a duplicate key
            expect_refused(path, field)
            field.remove(len(field.rows) - 1)
            assert form.errors == []
    if schema.get("additionalProperties") is False:
        form.value = {**full, "not_an_argument": 1}
        expect_refused((), form.root)
        form.value = full
    # Some schemas have only optional text, choices and check boxes: nothing to refuse there.
    assert refused or not any(
        isinstance(f, DictField)
        or (
            isinstance(f, TextField) and (f.kind != "string" or f.required or "pattern" in f.schema)
        )
        for _p, f in ArgsForm(schema, full).fields()
    )
    assert form.args() == full


SEGMENTATION = next(p.values[0] for p in SCHEMAS if p.id == "2.1.0-Threshold Segmentation-parallel")


def test_union_variants_and_nullable() -> None:
    form = ArgsForm(SEGMENTATION)
    method = form.field("segmentation_method")
    assert isinstance(method, UnionField)
    labels = [label for label, _ in method.selector.options]
    assert labels == ["Simple Threshold", "Otsu"]
    assert form.value["segmentation_method"] == {"method": "Otsu"}
    method.selector.value = 0  # Simple Threshold: its threshold is required
    assert form.value["segmentation_method"] == {"method": "Simple Threshold"}
    errors = {e.path: e.message for e in form.errors}
    assert errors[("segmentation_method", "threshold")] == "required"
    threshold = form.field("segmentation_method", "threshold")
    assert "required" in threshold.error_text
    assert isinstance(threshold, TextField)
    threshold.input.value = "120"
    assert form.value["segmentation_method"] == {"method": "Simple Threshold", "threshold": 120}
    assert ("segmentation_method", "threshold") not in {e.path for e in form.errors}

    # anyOf [IteratorConfig, null]: null until "set", then the object with its defaults.
    iterator = form.field("iterator_configuration")
    assert isinstance(iterator, NullableField)
    assert form.value["iterator_configuration"] is None
    iterator.toggle.value = True
    assert form.value["iterator_configuration"] == {
        "masking": {"mode": "No Masking"},
        "roi_table": None,
    }
    iterator.toggle.value = False
    assert form.value["iterator_configuration"] is None

    # An array of variants: add one, pick the median filter, give it a bad size.
    pre = form.field("pre_post_process", "pre_process")
    assert isinstance(pre, ArrayField)
    step = pre.add()
    assert isinstance(step, UnionField)
    step.selector.value = [label for label, _ in step.selector.options].index("Median Filter")
    assert form.value["pre_post_process"]["pre_process"] == [
        {"type": "Median Filter", "size_xy": 2, "size_z": None}
    ]
    size = form.field("pre_post_process", "pre_process", 0, "size_xy")
    assert isinstance(size, TextField)
    size.input.value = "0"  # exclusiveMinimum 0
    assert [e.path for e in form.errors] == [
        ("channel", "identifier"),  # required, no default: still to give
        ("pre_post_process", "pre_process", 0, "size_xy"),
    ]
    assert "less than or equal to the minimum" in size.error_text
    pre.remove(0)
    assert form.value["pre_post_process"]["pre_process"] == []
    assert [e.path for e in form.errors] == [("channel", "identifier")]


def test_hidden_arguments_and_callbacks() -> None:
    schema = {
        "type": "object",
        "properties": {
            "zarr_url": {"type": "string"},
            "label": {"type": "string", "title": "Label", "description": "the label"},
            "flag": {"type": "boolean"},
            "kind": {"enum": ["a", "b"]},
            "extra": {},
        },
        "required": ["zarr_url", "label"],
        "additionalProperties": False,
    }
    seen: list[dict[str, Any]] = []
    form = ArgsForm(schema, {"zarr_url": "/x", "label": "nuclei"})
    form.on_change(lambda f: seen.append(f.value))
    assert form.value == {"label": "nuclei"}
    with pytest.raises(KeyError):
        form.field("zarr_url")
    label = form.field("label")
    assert label.label is not None and label.label.tooltip == "the label"
    assert "<b>*</b>" in label.label.value
    flag = form.field("flag")
    assert isinstance(flag, BoolField) and flag.get() is MISSING
    flag.input.value = True
    kind = form.field("kind")
    assert isinstance(kind, ChoiceField)
    kind.input.value = 1
    extra = form.field("extra")
    extra.input.value = '{"a": [1'
    assert str(form.errors[0]).startswith("extra: not valid JSON")
    extra.input.value = '{"a": [1]}'
    assert form.args() == {"label": "nuclei", "flag": True, "kind": "b", "extra": {"a": [1]}}
    assert seen[-1] == form.value
    # Unknown keys given are kept, and refused by additionalProperties: false.
    form.value = {"label": "x", "other": 1}
    assert form.value == {"label": "x", "other": 1}
    assert "Additional properties are not allowed" in form.errors[0].message


def test_descriptions_under_fields_reordering_reset_and_empty_forms() -> None:
    schema = {
        "type": "object",
        "properties": {
            "zarr_url": {"type": "string"},
            "label": {"type": "string", "description": "the <label> name", "default": "x"},
            "channels": {"type": "array", "items": {"type": "string"}, "default": ["a", "b"]},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "once"},
        },
    }
    form = ArgsForm(schema, {"label": "nuclei", "channels": ["a", "b", "c"]}, title="Arguments")
    label = form.field("label")
    assert label.note.value.count("the &lt;label&gt; name") == 1  # shown, escaped
    assert label.note.layout.display != "none"
    assert form.field("channels").note.layout.display == "none"  # no description: no line
    maybe = form.field("maybe")
    assert isinstance(maybe, NullableField) and "once" in maybe.note.value
    assert maybe.inner.note.layout.display == "none"  # not twice

    channels = form.field("channels")
    assert isinstance(channels, ArrayField)
    first_row = channels.rows[0][0]
    assert first_row.children[1].disabled  # the first item cannot move up
    first_row.children[2].click()  # down
    assert form.value["channels"] == ["b", "a", "c"]
    channels.move(2, -2)
    assert form.value["channels"] == ["c", "b", "a"]
    channels.move(0, -1)  # past the end: nothing
    assert form.value["channels"] == ["c", "b", "a"]
    assert [row[1].key for row in channels.rows] == [0, 1, 2]
    assert channels.rows[-1][0].children[2].disabled

    form.reset()
    assert form.value == {"label": "x", "channels": ["a", "b"]}
    assert not form.is_empty and isinstance(form.children[0], w.HTML)

    # Only arguments the runner supplies: nothing to edit, and no title over nothing.
    runner_only = ArgsForm(
        {"type": "object", "properties": {"zarr_url": {"type": "string"}}}, title="Arguments"
    )
    assert runner_only.is_empty
    assert not any(isinstance(child, w.HTML) for child in runner_only.children)


def test_a_task_without_schema_gets_a_key_value_editor() -> None:
    form = ArgsForm(None, {"mode": "sleep", "seconds": 120, "zarr_url": "/x"})
    editor = form.root
    assert isinstance(editor, DictField)
    assert form.value == {"mode": "sleep", "seconds": 120}
    rows = {key.value: field for _row, field, key in editor.rows if key is not None}
    assert rows["mode"].input.value == "sleep"  # text shown as text, not as JSON
    assert rows["seconds"].input.value == "120"
    value = editor.add_entry("victims")
    value.input.value = '["/B01"]'  # JSON when it parses
    editor.add_entry("note").input.value = "a plain text"
    editor.add_entry("quoted").input.value = '"7"'
    assert form.value == {
        "mode": "sleep",
        "seconds": 120,
        "victims": ["/B01"],
        "note": "a plain text",
        "quoted": "7",
    }
    editor.add_entry("mode").input.value = "again"
    assert "duplicate keys: mode" in editor.error_text and not form.valid


LAYOUT_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "a text"},
        "level": {"type": "integer"},
        "method": {"enum": ["a", "b"]},
        "flag": {"type": "boolean", "default": False},
        "maybe": {"type": "boolean"},
        "anything": {},
        "channels": {"type": "array", "items": {"type": "string"}},
        "pairs": {"type": "object", "additionalProperties": {"type": "integer"}},
        "optional": {"type": ["string", "null"]},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "nested": {
            "type": "object",
            "properties": {"deep": {"type": "array", "items": {"enum": ["x", "y"]}}},
        },
    },
}


@pytest.mark.parametrize(
    "schema", [pytest.param(LAYOUT_SCHEMA, id="every-kind"), *SCHEMAS[:6], None]
)
def test_inputs_fill_their_room_and_shrink(schema: Any) -> None:
    """Text inputs and drop-downs are 100% wide (or share their row) with min-width 0, and
    every box in a row shrinks: nothing is cut off at 1,280 px (issue 19)."""
    form = ArgsForm(schema)
    if schema is LAYOUT_SCHEMA:
        form.value = {
            "channels": ["DAPI", "GFP"],
            "pairs": {"a": 1},
            "optional": "x",
            "nested": {"deep": ["x"]},
        }
    elif schema is None:
        form.value = {"key": "value"}
    inputs = [c for c in descendants(form) if isinstance(c, (w.Text, w.Textarea, w.Dropdown))]
    assert inputs or schema is not LAYOUT_SCHEMA
    assert clipping_risks(form) == []
    assert form.layout.min_width == "0"
    text = form.field("name").input if schema is LAYOUT_SCHEMA else None
    if text is not None:
        assert (text.layout.width, text.layout.min_width) == ("100%", "0")
        assert form.field("method").input.layout.width == "100%"
