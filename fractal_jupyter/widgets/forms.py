"""A task's JSON Schema as a form of ipywidgets, producing the task's `args` JSON.

`ArgsForm(schema, value)` builds one field per property, recursively: strings and numbers as text
boxes (an empty box is "not given"), booleans as check boxes, `enum`s as drop-downs, arrays and
free-form dicts as lists of fields with add/remove buttons (array items also move up and down),
nested objects as indented groups,
`$ref`/`$defs` and single-entry `allOf` resolved, `anyOf`/`oneOf` with `null` as a field with a
"set" check box, other `anyOf`/`oneOf` as a choice of variants (named by their discriminator
value or title), anything else as a JSON text box. Titles are the labels, descriptions are
shown under the fields (and as tooltips), required fields carry a `*`. Defaults fill the form;
an optional field without a default is left out of `value` until it is given. Without a schema
(`None`) the form is a key/value editor whose values are text or JSON.

Every change validates `value` against the schema with `jsonschema` (the arguments the runner
supplies, `zarr_url` and co., are hidden and never required) and puts each error next to the
field it concerns. `form.errors` lists them, `form.args()` returns the arguments or raises
`InvalidArguments`.
"""

from __future__ import annotations

import html
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as w
from jsonschema.exceptions import ValidationError
from jsonschema.validators import validator_for

from ..schemas.workflow import RESERVED_ARGUMENTS
from ._common import fill

JSON = dict[str, Any]
Path = tuple[str | int, ...]

LABEL_WIDTH = "220px"
MAX_DEPTH = 24  # deeper (recursive) schemas fall back to a JSON text box
FREE_VALUE = "x-fractal-free-value"  # marks the values of a schema-less task (text or JSON)


class _Missing:
    """A field that is not given: left out of the arguments."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


@dataclass(frozen=True)
class FieldError:
    path: Path
    message: str

    def __str__(self) -> str:
        where = "/".join(str(part) for part in self.path) or "(arguments)"
        return f"{where}: {self.message}"


class InvalidArguments(ValueError):
    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = list(errors)


# --- schemas ------------------------------------------------------------------------------

_ANNOTATIONS = ("title", "description", "default")


def _pointer(root: JSON, ref: str) -> JSON:
    if not ref.startswith("#"):
        raise ValueError(f"only local references are supported, not {ref!r}")
    target: Any = root
    for part in ref.lstrip("#").split("/"):
        if part:
            target = target[part.replace("~1", "/").replace("~0", "~")]
    if not isinstance(target, dict):
        raise ValueError(f"{ref!r} does not point to a schema")
    return target


def resolve(schema: Any, root: JSON) -> JSON:
    """`schema` with `$ref` followed and a one-entry `allOf` merged (outer annotations win)."""
    if not isinstance(schema, dict):
        return {}  # `true` / `false` schemas: anything
    seen: set[str] = set()
    while True:
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref in seen:
                return {k: v for k, v in schema.items() if k != "$ref"}
            seen.add(ref)
            target = _pointer(root, ref)
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        elif isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            inner = resolve(schema["allOf"][0], root)
            outer = {k: v for k, v in schema.items() if k != "allOf"}
            schema = {**inner, **outer}
        else:
            result: JSON = schema
            return result


def _is_null(schema: JSON) -> bool:
    return (
        schema.get("type") == "null"
        or ("const" in schema and schema["const"] is None)
        or schema.get("enum") == [None]
    )


def _label_of(schema: JSON, key: str | int | None) -> str:
    if isinstance(key, int):
        return f"#{key + 1}"
    return str(schema.get("title") or key or "")


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _note_html(description: Any) -> str:
    if not isinstance(description, str) or not description.strip():
        return ""
    text = html.escape(description.strip()).replace("\n", "<br>")
    return f'<div style="color:#555;font-size:85%;line-height:1.3">{text}</div>'


# --- fields -------------------------------------------------------------------------------


class Field(ABC):
    """One field of the form, for one (sub)schema; `widget` is what is displayed."""

    widget: w.Widget

    def __init__(
        self,
        form: ArgsForm,
        schema: JSON,
        *,
        key: str | int | None,
        required: bool,
        depth: int,
    ) -> None:
        self.form = form
        self.schema = schema
        self.key = key
        self.required = required
        self.depth = depth
        self.has_default = "default" in schema
        self.default = schema.get("default", MISSING)
        # An optional field without a default can be left out: it has a check box to include it.
        self.optional = not required and not self.has_default
        self.error = w.HTML(value="", layout=w.Layout(margin="0 0 0 4px"))
        self.error.add_class("fractal-field-error")
        self.label: w.HTML | None = None
        if depth > 0 and (key is not None or "title" in schema):
            text = html.escape(_label_of(schema, key)) + (" <b>*</b>" if required else "")
            self.label = w.HTML(
                value=text,
                tooltip=schema.get("description") or None,
                layout=w.Layout(width=LABEL_WIDTH, min_width="0", flex="0 1 auto"),
            )
        # The description under the field (a tooltip alone is missed, and absent on touch).
        self.note = w.HTML(
            value=_note_html(schema.get("description")) if depth > 0 else "",
            layout=w.Layout(margin="0 0 2px 4px", max_width="720px"),
        )
        self.note.add_class("fractal-field-note")
        if not self.note.value:
            self.note.layout.display = "none"

    # subclasses
    @abstractmethod
    def get(self) -> Any: ...

    @abstractmethod
    def set(self, value: Any) -> None: ...

    def children(self) -> Iterable[Field]:
        return ()

    def child(self, part: str | int) -> Field | None:
        """The field for one step of an instance path, if shown."""
        return None

    def problems(self) -> list[str]:
        """What the field itself finds wrong (text that does not parse)."""
        return []

    # common
    def reset(self) -> None:
        self.set(self.default)

    def walk(self) -> Iterator[Field]:
        yield self
        for child in self.children():
            yield from child.walk()

    def show_errors(self, messages: list[str]) -> None:
        self.error.value = "".join(
            f'<div style="color:#c62828;font-size:90%">{html.escape(m)}</div>' for m in messages
        )

    @property
    def error_text(self) -> str:
        return html.unescape(self.error.value.replace("</div>", "\n")).replace(
            '<div style="color:#c62828;font-size:90%">', ""
        )

    def changed(self, _change: Any = None) -> None:
        self.form.field_changed()

    def _row(self, *inputs: w.Widget) -> w.VBox:
        """The label and inputs on one line, the description under them."""
        items = [self.label, *inputs] if self.label is not None else list(inputs)
        line = w.HBox(items, layout=w.Layout(align_items="center", min_width="0"))
        return w.VBox([line, self.note], layout=w.Layout(min_width="0"))


class TextField(Field):
    """A string, number or integer as a text box; empty means not given."""

    def __init__(self, form: ArgsForm, schema: JSON, **kwargs: Any) -> None:
        super().__init__(form, schema, **kwargs)
        self.kind = schema.get("type", "string")
        placeholder = {"number": "number", "integer": "integer"}.get(self.kind, "")
        self.input = w.Text(
            placeholder=placeholder,
            tooltip=schema.get("description") or None,
            continuous_update=False,
            layout=fill(),
        )
        self.input.observe(self.changed, "value")
        self.widget = w.VBox([self._row(self.input), self.error])

    def _parse(self) -> tuple[Any, str | None]:
        text = self.input.value
        if text == "":
            return ("" if self.default == "" else MISSING), None
        if self.kind == "string":
            return text, None
        try:
            number = json.loads(text.strip())
        except ValueError:
            try:
                number = float(text.strip())
            except ValueError:
                return MISSING, f"{text!r} is not a number"
        if isinstance(number, bool) or not isinstance(number, int | float):
            return MISSING, f"{text!r} is not a number"
        if isinstance(number, float) and not math.isfinite(number):
            return MISSING, f"{text!r} is not a finite number"
        if self.kind == "integer" and not isinstance(number, int):
            return MISSING, f"{text!r} is not an integer"
        return number, None

    def get(self) -> Any:
        return self._parse()[0]

    def problems(self) -> list[str]:
        problem = self._parse()[1]
        return [problem] if problem else []

    def set(self, value: Any) -> None:
        self.input.value = "" if value is MISSING or value is None else _as_text(value)


class BoolField(Field):
    def __init__(self, form: ArgsForm, schema: JSON, **kwargs: Any) -> None:
        super().__init__(form, schema, **kwargs)
        self.input: w.Checkbox | w.Dropdown
        if self.optional:
            self.input = w.Dropdown(
                options=[("(not set)", MISSING), ("true", True), ("false", False)],
                layout=fill("240px"),
            )
        else:
            self.input = w.Checkbox(indent=False)
        self.input.tooltip = schema.get("description") or None
        self.input.observe(self.changed, "value")
        self.widget = w.VBox([self._row(self.input), self.error])

    def get(self) -> Any:
        return self.input.value

    def set(self, value: Any) -> None:
        if isinstance(self.input, w.Checkbox):
            self.input.value = bool(value)
        else:
            self.input.value = value if isinstance(value, bool) else MISSING


class ChoiceField(Field):
    """`enum` as a drop-down (with "(not set)" when the field is optional)."""

    def __init__(self, form: ArgsForm, schema: JSON, **kwargs: Any) -> None:
        super().__init__(form, schema, **kwargs)
        self.values: list[Any] = list(schema["enum"])
        options: list[tuple[str, int]] = [(_as_text(v), i) for i, v in enumerate(self.values)]
        if self.optional:
            options.insert(0, ("(not set)", -1))
        self.input = w.Dropdown(
            options=options, tooltip=schema.get("description") or None, layout=fill()
        )
        self.input.observe(self.changed, "value")
        self.widget = w.VBox([self._row(self.input), self.error])

    def get(self) -> Any:
        index = self.input.value
        return MISSING if index is None or index < 0 else self.values[index]

    def set(self, value: Any) -> None:
        if value is MISSING and self.optional:
            self.input.value = -1
            return
        for index, candidate in enumerate(self.values):
            if candidate == value and type(candidate) is type(value):
                self.input.value = index
                return
        self.input.value = -1 if self.optional else 0


class ConstField(Field):
    """A fixed value (typically a discriminator): shown, never edited, always given."""

    def __init__(self, form: ArgsForm, schema: JSON, **kwargs: Any) -> None:
        super().__init__(form, schema, **kwargs)
        self.value = schema.get("const")
        self.input = w.HTML(value=f"<code>{html.escape(_as_text(self.value))}</code>")
        self.widget = w.VBox([self._row(self.input), self.error])

    def get(self) -> Any:
        return self.value

    def set(self, value: Any) -> None:
        pass


class JsonField(Field):
    """Any JSON value, typed as text (for schemas a form cannot express)."""

    def __init__(self, form: ArgsForm, schema: JSON, **kwargs: Any) -> None:
        super().__init__(form, schema, **kwargs)
        self.input = w.Textarea(
            placeholder="JSON",
            continuous_update=False,
            tooltip=schema.get("description") or None,
            layout=fill(height="4em"),
        )
        self.input.observe(self.changed, "value")
        self.widget = w.VBox([self._row(self.input), self.error])

    def _parse(self) -> tuple[Any, str | None]:
        if not self.input.value.strip():
            return MISSING, None
        try:
            return json.loads(self.input.value), None
        except ValueError as error:
            return MISSING, f"not valid JSON: {error}"

    def get(self) -> Any:
        return self._parse()[0]

    def problems(self) -> list[str]:
        problem = self._parse()[1]
        return [problem] if problem else []

    def set(self, value: Any) -> None:
        self.input.value = "" if value is MISSING else json.dumps(value)


class LooseField(JsonField):
    """A value of a task without a schema: JSON when it parses as JSON, else the text."""

    def __init__(self, form: ArgsForm, schema: JSON, **kwargs: Any) -> None:
        super().__init__(form, schema, **kwargs)
        self.input.placeholder = "text, or a JSON value (3, true, [1, 2])"
        self.input.layout.height = "2.2em"

    def _parse(self) -> tuple[Any, str | None]:
        text = self.input.value
        if not text.strip():
            return MISSING, None
        try:
            return json.loads(text), None
        except ValueError:
            return text, None

    def set(self, value: Any) -> None:
        if value is MISSING:
            self.input.value = ""
        elif isinstance(value, str) and self._looks_like_json(value) is False:
            self.input.value = value
        else:
            self.input.value = json.dumps(value)

    @staticmethod
    def _looks_like_json(text: str) -> bool:
        try:
            json.loads(text)
        except ValueError:
            return False
        return True


class _Includable(Field):
    """A container that, when optional without default, has an "include" check box."""

    body: w.VBox

    def _init_include(self) -> None:
        self.include: w.Checkbox | None = None
        if self.optional:
            self.include = w.Checkbox(value=False, description="include", indent=False)
            self.include.layout.width = "auto"
            self.include.observe(self._include_changed, "value")

    def _include_changed(self, _change: Any) -> None:
        self.body.layout.display = "" if self.included else "none"
        self.changed()

    @property
    def included(self) -> bool:
        return self.include is None or self.include.value

    def _set_included(self, value: Any) -> bool:
        """Check or uncheck "include" for `value`; whether the value is to be shown."""
        if self.include is not None:
            self.include.value = value is not MISSING
            self.body.layout.display = "" if self.include.value else "none"
        return value is not MISSING

    def _header(self, *extra: w.Widget) -> w.HBox:
        parts = [p for p in (self.include, *extra) if p is not None]
        return self._row(*parts)


def _indented(children: list[w.Widget]) -> w.VBox:
    return w.VBox(
        children,
        layout=w.Layout(
            border_left="2px solid #ddd",
            padding="0 0 0 10px",
            margin="2px 0 4px 8px",
            min_width="0",
        ),
    )


def _grow(widget: w.Widget) -> None:
    """A field beside its row's buttons takes the rest of the row and shrinks with it."""
    widget.layout.flex = "1 1 auto"
    widget.layout.min_width = "0"


class ObjectField(_Includable):
    def __init__(self, form: ArgsForm, schema: JSON, **kwargs: Any) -> None:
        super().__init__(form, schema, **kwargs)
        self._init_include()
        required = set(schema.get("required", []))
        hidden = form.hidden if self.depth == 0 else frozenset()
        self.fields: dict[str, Field] = {}
        for name, sub in (schema.get("properties") or {}).items():
            if name in hidden:
                continue
            self.fields[name] = form.build(
                sub, key=name, required=name in required, depth=self.depth + 1
            )
        self.extra: JSON = {}  # given keys the schema does not describe, kept as they are
        self.body = _indented([f.widget for f in self.fields.values()])
        parts: list[w.Widget] = [self.error, self.body]
        if self.label is not None or self.include is not None:
            parts.insert(0, self._header())
        self.widget = w.VBox(parts)

    def children(self) -> Iterable[Field]:
        return self.fields.values()

    def child(self, part: str | int) -> Field | None:
        return self.fields.get(part) if isinstance(part, str) else None

    def get(self) -> Any:
        if not self.included:
            return MISSING
        result = dict(self.extra)
        for name, field in self.fields.items():
            value = field.get()
            if value is not MISSING:
                result[name] = value
        return result

    def set(self, value: Any) -> None:
        if not self._set_included(value):
            for field in self.fields.values():
                field.reset()
            self.extra = {}
            return
        given = value if isinstance(value, dict) else {}
        hidden = self.form.hidden if self.depth == 0 else frozenset()
        for name, field in self.fields.items():
            field.set(given[name]) if name in given else field.reset()
        self.extra = {k: v for k, v in given.items() if k not in self.fields and k not in hidden}


class _ListLike(_Includable):
    """Rows of fields with add and remove buttons (arrays, dicts)."""

    def _init_rows(self) -> None:
        self._init_include()
        self.rows: list[tuple[w.Widget, Field, w.Text | None]] = []
        self.add_button = w.Button(
            description="add", icon="plus", layout=w.Layout(width="auto", align_self="flex-start")
        )
        self.add_button.on_click(lambda _b: self.add())
        self.items_box = w.VBox([])
        self.body = _indented([self.items_box, self.add_button])
        self.widget = w.VBox([self._header(), self.error, self.body])

    @abstractmethod
    def _new_row(self, value: Any, name: str | None = None) -> None: ...

    def add(self, value: Any = MISSING) -> Field:
        self._new_row(value)
        self._refresh()
        self.changed()
        return self.rows[-1][1]

    def remove(self, index: int) -> None:
        del self.rows[index]
        self._refresh()
        self.changed()

    def _remove_button(self, field: Field) -> w.Button:
        button = w.Button(icon="trash", tooltip="remove", layout=w.Layout(width="36px"))
        button.on_click(lambda _b: self.remove([row[1] for row in self.rows].index(field)))
        return button

    def _refresh(self) -> None:
        self.items_box.children = [row[0] for row in self.rows]

    def children(self) -> Iterable[Field]:
        return [row[1] for row in self.rows]


class ArrayField(_ListLike):
    def __init__(self, form: ArgsForm, schema: JSON, **kwargs: Any) -> None:
        super().__init__(form, schema, **kwargs)
        self.items_schema = schema.get("items", {})
        self._init_rows()

    def _new_row(self, value: Any, name: str | None = None) -> None:
        field = self.form.build(
            self.items_schema, key=len(self.rows), required=True, depth=self.depth + 1
        )
        if value is not MISSING:
            field.set(value)
        up = w.Button(icon="arrow-up", tooltip="move up", layout=w.Layout(width="36px"))
        down = w.Button(icon="arrow-down", tooltip="move down", layout=w.Layout(width="36px"))
        up.on_click(lambda _b: self.move(self._index_of(field), -1))
        down.on_click(lambda _b: self.move(self._index_of(field), 1))
        _grow(field.widget)
        row = w.HBox(
            [field.widget, up, down, self._remove_button(field)],
            layout=w.Layout(align_items="flex-start", min_width="0"),
        )
        self.rows.append((row, field, None))

    def _index_of(self, field: Field) -> int:
        return [row[1] for row in self.rows].index(field)

    def move(self, index: int, delta: int) -> None:
        """Move item `index` by `delta` places (the arrows do it); nothing past the ends."""
        target = index + delta
        if not 0 <= target < len(self.rows) or target == index:
            return
        self.rows.insert(target, self.rows.pop(index))
        self._renumber()
        self._refresh()
        self.changed()

    def _refresh(self) -> None:
        super()._refresh()
        for position, (row, _field, _name) in enumerate(self.rows):
            up, down = row.children[1], row.children[2]
            up.disabled = position == 0
            down.disabled = position == len(self.rows) - 1

    def remove(self, index: int) -> None:
        super().remove(index)
        self._renumber()

    def _renumber(self) -> None:
        for position, (_row, field, _name) in enumerate(self.rows):
            field.key = position
            if field.label is not None:
                field.label.value = f"#{position + 1}"

    def child(self, part: str | int) -> Field | None:
        if isinstance(part, int) and 0 <= part < len(self.rows):
            return self.rows[part][1]
        return None

    def get(self) -> Any:
        if not self.included:
            return MISSING
        values = [row[1].get() for row in self.rows]
        return [None if v is MISSING else v for v in values]

    def set(self, value: Any) -> None:
        self.rows = []
        if self._set_included(value) and isinstance(value, list):
            for item in value:
                self._new_row(item)
        self._refresh()


class DictField(_ListLike):
    """An object of free keys (`additionalProperties` a schema): key and value per row."""

    def __init__(self, form: ArgsForm, schema: JSON, **kwargs: Any) -> None:
        super().__init__(form, schema, **kwargs)
        self.values_schema = schema.get("additionalProperties", {})
        self._init_rows()

    def _new_row(self, value: Any, name: str | None = None) -> None:
        key = w.Text(
            value=name or "",
            placeholder="key",
            continuous_update=False,
            layout=w.Layout(width="160px", min_width="0", flex="0 1 auto"),
        )
        key.observe(self.changed, "value")
        field = self.form.build(self.values_schema, key=None, required=True, depth=self.depth + 1)
        if value is not MISSING:
            field.set(value)
        _grow(field.widget)
        row = w.HBox(
            [key, field.widget, self._remove_button(field)],
            layout=w.Layout(align_items="flex-start", min_width="0"),
        )
        self.rows.append((row, field, key))

    def add_entry(self, name: str, value: Any = MISSING) -> Field:
        field = self.add(value)
        key = self.rows[-1][2]
        assert key is not None
        key.value = name
        return field

    def child(self, part: str | int) -> Field | None:
        for _row, field, key in self.rows:
            if key is not None and key.value == part:
                return field
        return None

    def problems(self) -> list[str]:
        names = [key.value for _r, _f, key in self.rows if key is not None]
        problems = []
        if "" in names:
            problems.append("every entry needs a key")
        duplicates = sorted({n for n in names if n and names.count(n) > 1})
        if duplicates:
            problems.append(f"duplicate keys: {', '.join(duplicates)}")
        return problems

    def get(self) -> Any:
        if not self.included:
            return MISSING
        result = {}
        for _row, field, key in self.rows:
            if key is not None and key.value:
                value = field.get()
                result[key.value] = None if value is MISSING else value
        return result

    def set(self, value: Any) -> None:
        self.rows = []
        if self._set_included(value) and isinstance(value, dict):
            for name, item in value.items():
                self._new_row(item, name)
        self._refresh()


class NullableField(Field):
    """`anyOf: [X, null]`: a "set" check box; unchecked is `null` (or not given)."""

    def __init__(
        self, form: ArgsForm, schema: JSON, inner: JSON, index: int, **kwargs: Any
    ) -> None:
        super().__init__(form, schema, **kwargs)
        self.branch_index = index  # the non-null entry's position in the anyOf/oneOf list
        inner = {**inner, **{k: v for k, v in schema.items() if k == "description"}}
        self.inner = form.build(inner, key=None, required=True, depth=self.depth + 1)
        if self.inner.label is not None:
            self.inner.label.layout.display = "none"
        self.inner.note.layout.display = "none"  # the description is shown once, here
        self.toggle = w.Checkbox(
            value=False, description="set", indent=False, layout=w.Layout(width="60px")
        )
        self.toggle.observe(self._toggled, "value")
        self.inner_box = w.Box([self.inner.widget], layout=w.Layout(flex="1 1 auto", min_width="0"))
        self.widget = w.VBox([self._row(self.toggle, self.inner_box), self.error])
        self._toggled(None, notify=False)

    def _toggled(self, _change: Any, notify: bool = True) -> None:
        self.inner_box.layout.display = "" if self.toggle.value else "none"
        if notify:
            self.changed()

    def children(self) -> Iterable[Field]:
        return [self.inner]

    def child(self, part: str | int) -> Field | None:
        return self.inner.child(part) if self.toggle.value else None

    def get(self) -> Any:
        if not self.toggle.value:
            return MISSING if self.optional else None
        value = self.inner.get()
        return None if value is MISSING else value

    def set(self, value: Any) -> None:
        self.toggle.value = value is not MISSING and value is not None
        if self.toggle.value:
            self.inner.set(value)
        else:
            self.inner.reset()


class UnionField(_Includable):
    """`oneOf`/`anyOf` of several schemas: pick a variant, then fill it in."""

    def __init__(
        self, form: ArgsForm, schema: JSON, branches: list[tuple[int, JSON]], **kwargs: Any
    ) -> None:
        super().__init__(form, schema, **kwargs)
        self._init_include()
        self.branches = branches  # (position in the anyOf/oneOf list, resolved schema)
        discriminator = schema.get("discriminator")
        self.discriminator: str | None = (
            discriminator.get("propertyName") if isinstance(discriminator, dict) else None
        )
        names = [self._branch_name(i, b) for i, (_p, b) in enumerate(branches)]
        self.selector = w.Dropdown(
            options=[(n, i) for i, n in enumerate(names)], value=0, layout=fill("320px")
        )
        self.fields: list[Field | None] = [None] * len(branches)
        self.body = w.VBox([])
        self.widget = w.VBox([self._header(self.selector), self.error, self.body])
        self.selector.observe(self._selected, "value")
        self._show(0)

    def _branch_name(self, index: int, branch: JSON) -> str:
        properties = branch.get("properties") or {}
        if self.discriminator and self.discriminator in properties:
            tag = resolve(properties[self.discriminator], self.form.schema)
            if "const" in tag:
                return str(tag["const"])
            if "default" in tag:
                return str(tag["default"])
        if "title" in branch:
            return str(branch["title"])
        return str(branch.get("type", f"option {index + 1}"))

    def _field(self, index: int) -> Field:
        field = self.fields[index]
        if field is None:
            _position, branch = self.branches[index]
            branch = {k: v for k, v in branch.items() if k != "title"}
            field = self.form.build(branch, key=None, required=True, depth=self.depth + 1)
            self.fields[index] = field
        return field

    def _show(self, index: int) -> None:
        self.body.children = [self._field(index).widget]
        self.body.layout.display = "" if self.included else "none"

    def _selected(self, _change: Any) -> None:
        self._show(self.selector.value)
        self.changed()

    @property
    def active(self) -> Field:
        return self._field(self.selector.value)

    @property
    def active_position(self) -> int:
        position: int = self.branches[self.selector.value][0]
        return position

    def children(self) -> Iterable[Field]:
        return [self.active]

    def child(self, part: str | int) -> Field | None:
        return self.active.child(part)

    def get(self) -> Any:
        return self.active.get() if self.included else MISSING

    def _branch_for(self, value: Any) -> int:
        if self.discriminator and isinstance(value, dict) and self.discriminator in value:
            for index, (_p, branch) in enumerate(self.branches):
                if self._branch_name(index, branch) == str(value[self.discriminator]):
                    return index
        for index, (_p, branch) in enumerate(self.branches):
            if not list(self.form.validator_for_schema(branch).iter_errors(value)):
                return index
        kinds = {dict: "object", list: "array", str: "string", bool: "boolean"}
        kind = kinds.get(type(value), "number")
        for index, (_p, branch) in enumerate(self.branches):
            if branch.get("type") == kind:
                return index
        return 0

    def set(self, value: Any) -> None:
        if not self._set_included(value):
            self.selector.value = 0
            self._show(0)
            self.active.reset()
            return
        index = self._branch_for(value)
        self.selector.value = index
        self._show(index)
        self.active.set(value)


# --- the form -----------------------------------------------------------------------------


class ArgsForm(w.VBox):  # type: ignore[misc]
    """The form for a task's arguments; `value` is the arguments JSON.

    `hidden`: top-level properties not shown, never produced nor required (the arguments the
    runner supplies). `on_change(callback)` is called with the form after each edit.
    """

    def __init__(
        self,
        schema: JSON | None,
        value: JSON | None = None,
        *,
        hidden: Iterable[str] = RESERVED_ARGUMENTS,
        title: str | None = None,
    ) -> None:
        super().__init__(layout=w.Layout(min_width="0"))
        self.add_class("fractal-args-form")
        # Without a schema: free keys, each value text or JSON (a key/value editor).
        self.schema: JSON = schema or {"type": "object", "additionalProperties": {FREE_VALUE: True}}
        self.hidden = frozenset(hidden)
        self._callbacks: list[Callable[[ArgsForm], None]] = []
        self._quiet = True
        self.errors: list[FieldError] = []
        self._validator = self._make_validator()
        self.root = self.build(self.schema, key=None, required=True, depth=0)
        # No title over nothing: a part whose arguments the runner supplies is not shown.
        header = [w.HTML(f"<b>{html.escape(title)}</b>")] if title and not self.is_empty else []
        self.children = [*header, self.root.widget]
        self.value = value if value is not None else MISSING
        self._quiet = False
        self.validate()

    @property
    def is_empty(self) -> bool:
        """Whether the form has nothing to edit (an object schema without shown properties)."""
        return isinstance(self.root, ObjectField) and not self.root.fields

    def reset(self) -> None:
        """Every field back to the schema's default (an optional one without default: unset)."""
        self.value = MISSING

    def _make_validator(self) -> Any:
        schema = dict(self.schema)
        if isinstance(schema.get("required"), list):
            schema["required"] = [n for n in schema["required"] if n not in self.hidden]
        return validator_for(schema)(schema)

    def validator_for_schema(self, subschema: JSON) -> Any:
        """A validator for a part of this schema (its `$ref`s resolve against the whole)."""
        return self._validator.evolve(schema=subschema)

    def build(self, schema: Any, *, key: str | int | None, required: bool, depth: int) -> Field:
        """The field for a (sub)schema, showing its default."""
        quiet, self._quiet = self._quiet, True
        try:
            field = self._build(resolve(schema, self.schema), key, required, depth)
            field.widget.layout.min_width = "0"  # shrinks with its container (no clipping)
            field.reset()
        finally:
            self._quiet = quiet
        return field

    def _build(self, schema: JSON, key: str | int | None, required: bool, depth: int) -> Field:
        options = {"key": key, "required": required, "depth": depth}
        if depth > MAX_DEPTH:
            return JsonField(self, schema, **options)
        if schema.get(FREE_VALUE):
            return LooseField(self, schema, **options)
        if "const" in schema:
            return ConstField(self, schema, **options)
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return ChoiceField(self, schema, **options)
        for word in ("oneOf", "anyOf"):
            if isinstance(schema.get(word), list) and schema[word]:
                return self._build_union(schema, word, options)
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            if len(kinds) == 1:
                inner = {**schema, "type": kinds[0]}
                inner.pop("default", None)
                if len(kinds) < len(kind):
                    return NullableField(self, schema, inner, 0, **options)
                return self._build(inner, key, required, depth)
            return JsonField(self, schema, **options)
        if kind in ("string", "number", "integer"):
            return TextField(self, schema, **options)
        if kind == "boolean":
            return BoolField(self, schema, **options)
        if kind == "null":
            return ConstField(self, {**schema, "const": None}, **options)
        if kind == "array" and isinstance(schema.get("items"), dict):
            return ArrayField(self, schema, **options)
        if kind == "object" or (kind is None and "properties" in schema):
            extra = schema.get("additionalProperties")
            if not schema.get("properties") and isinstance(extra, dict) and extra:
                return DictField(self, schema, **options)
            if schema.get("properties") or depth == 0:
                return ObjectField(self, schema, **options)
        return JsonField(self, schema, **options)

    def _build_union(self, schema: JSON, word: str, options: dict[str, Any]) -> Field:
        resolved = [(i, resolve(b, self.schema)) for i, b in enumerate(schema[word])]
        others = [(i, b) for i, b in resolved if not _is_null(b)]
        nullable = len(others) < len(resolved)
        if not others:
            return ConstField(self, {**schema, "const": None}, **options)
        if len(others) == 1:
            index, inner = others[0]
            inner = {**inner, **{k: schema[k] for k in ("title",) if k in schema}}
            if nullable:
                return NullableField(self, schema, inner, index, **options)
            merged = {**inner, **{k: schema[k] for k in _ANNOTATIONS if k in schema}}
            return self._build(resolve(merged, self.schema), **options)
        return UnionField(self, schema, others, **options)

    # value
    @property
    def value(self) -> JSON:
        result = self.root.get()
        return result if isinstance(result, dict) else {}

    @value.setter
    def value(self, value: JSON | Any) -> None:
        quiet, self._quiet = self._quiet, True
        try:
            if value is MISSING:
                self.root.reset()
            else:
                self.root.set({k: v for k, v in value.items() if k not in self.hidden})
        finally:
            self._quiet = quiet
        if not quiet:
            self.field_changed()

    def on_change(self, callback: Callable[[ArgsForm], None]) -> None:
        self._callbacks.append(callback)

    def field_changed(self) -> None:
        if self._quiet:
            return
        self.validate()
        for callback in self._callbacks:
            callback(self)

    def field(self, *path: str | int) -> Field:
        """The field at an instance path (`form.field("channel", "label")`)."""
        field: Field | None = self.root
        for part in path:
            field = field.child(part) if field is not None else None
        if field is None:
            raise KeyError(f"no field at {'/'.join(map(str, path))}")
        return field

    # validation
    @property
    def valid(self) -> bool:
        return not self.errors

    def args(self) -> JSON:
        """The arguments, or `InvalidArguments` with every problem."""
        self.validate()
        if self.errors:
            raise InvalidArguments(self.errors)
        return self.value

    def validate(self) -> list[FieldError]:
        """Check the value, show each error next to its field; the errors."""
        found: dict[int, tuple[Field, list[str]]] = {}
        errors: list[FieldError] = []

        def attach(path: Path, message: str, at: Field | None = None) -> None:
            if FieldError(path, message) in errors:
                return
            field, rest = (at, ()) if at is not None else self._locate(path)
            text = message if not rest else f"{'/'.join(map(str, rest))}: {message}"
            found.setdefault(id(field), (field, []))[1].append(text)
            errors.append(FieldError(path, message))

        unparsed: set[Path] = set()
        for path, field in self._fields_with_paths():
            for problem in field.problems():
                unparsed.add(path)
                attach(path, problem, field)
        for error in self._validator.iter_errors(self.value):
            for path, message in self._explain(error):
                if path not in unparsed:
                    attach(path, message)
        for field in self.root.walk():
            entry = found.get(id(field))
            field.show_errors(entry[1] if entry else [])
        self.errors = errors
        return errors

    def fields(self) -> Iterator[tuple[Path, Field]]:
        """Every shown field with its instance path (a variant's field has its union's path)."""
        return self._fields_with_paths()

    def _fields_with_paths(self) -> Iterator[tuple[Path, Field]]:
        def visit(field: Field, path: Path) -> Iterator[tuple[Path, Field]]:
            yield path, field
            if isinstance(field, ObjectField):
                if field.included:
                    for name, child in field.fields.items():
                        yield from visit(child, (*path, name))
            elif isinstance(field, ArrayField):
                for index, (_row, child, _k) in enumerate(field.rows):
                    yield from visit(child, (*path, index))
            elif isinstance(field, DictField):
                for _row, child, key in field.rows:
                    if key is not None:
                        yield from visit(child, (*path, key.value))
            elif isinstance(field, UnionField):
                if field.included:
                    yield from visit(field.active, path)
            elif isinstance(field, NullableField) and field.toggle.value:
                yield from visit(field.inner, path)

        seen: set[int] = set()
        for path, field in visit(self.root, ()):
            if id(field) not in seen:
                seen.add(id(field))
                yield path, field

    def _locate(self, path: Path) -> tuple[Field, Path]:
        field = self.root
        for depth, part in enumerate(path):
            child = field.child(part)
            if child is None:
                return field, path[depth:]
            field = child
        return field, ()

    def _explain(self, error: ValidationError) -> Iterator[tuple[Path, str]]:
        """(instance path, message) for one jsonschema error, into the chosen variant."""
        path: Path = tuple(error.absolute_path)
        if error.validator == "required":
            at = self._locate(path)
            names: list[str] = list(error.validator_value)  # type: ignore[arg-type]
            for name in names:
                instance = error.instance
                if isinstance(instance, dict) and name not in instance:
                    if not path and name in self.hidden:
                        continue
                    if at[1] == () and at[0].child(name) is not None:
                        yield (*path, name), "required"
                    else:
                        yield path, f"{name!r} is required"
            return
        if error.validator in ("oneOf", "anyOf") and error.context:
            field, rest = self._locate(path)
            position: int | None = None
            if isinstance(field, UnionField) and field.included:
                position = field.active_position
            elif isinstance(field, NullableField) and field.toggle.value:
                position = field.branch_index
            else:  # a one-variant oneOf, shown as the variant itself
                variants: list[Any] = list(error.validator_value)  # type: ignore[arg-type]
                real = [
                    i
                    for i, branch in enumerate(variants)
                    if not _is_null(resolve(branch, self.schema))
                ]
                position = real[0] if len(real) == 1 else None
            if position is not None and not rest:
                inner = [e for e in error.context if e.relative_schema_path[0] == position]
                if inner:
                    for sub in inner:
                        yield from self._explain(sub)
                    return
        yield path, error.message
