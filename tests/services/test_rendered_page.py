"""`RenderedImagePage` must give the JSON that `ImagePage` would give for the same values."""

import json

from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from fractal_jupyter.schemas.images import ImagePage, RenderedImagePage

texts = st.text(max_size=8)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
images = st.lists(
    st.tuples(
        texts.map(lambda name: f"/z/{name}"),
        st.none() | texts.map(lambda name: f"/o/{name}"),
        st.dictionaries(texts, scalars, max_size=3),
        st.dictionaries(texts, st.booleans(), max_size=3),
    ),
    max_size=5,
)


@given(
    images=images,
    summary=st.dictionaries(texts, st.lists(scalars, min_size=1, max_size=3), max_size=3),
    types=st.lists(texts, max_size=3),
)
def test_rendered_page_is_the_model_json(images, summary, types):
    try:
        model = ImagePage(
            total_count=len(images),
            page_size=7,
            current_page=1,
            attributes=summary,
            types=types,
            images=[
                {"zarr_url": url, "origin": origin, "attributes": a, "types": t}
                for url, origin, a, t in images
            ],
        )
    except ValidationError:
        assume(False)
    # The database holds attribute values and each image's attributes and types as JSON text.
    rendered = RenderedImagePage(
        total_count=model.total_count,
        page_size=model.page_size,
        current_page=model.current_page,
        attribute_values=[
            (key, json.dumps(value)) for key, values in model.attributes.items() for value in values
        ],
        types=model.types,
        images=[
            (image.zarr_url, image.origin, json.dumps(image.attributes), json.dumps(image.types))
            for image in model.images
        ],
    )
    ours, expected = json.loads(rendered.to_json()), json.loads(model.model_dump_json())
    assert ours == expected
    assert list(ours) == list(expected)
    assert [list(image) for image in ours["images"]] == [list(i) for i in expected["images"]]
