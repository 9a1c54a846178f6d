"""The import's fast check of images agrees with `SingleImage` on every image it accepts."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fractal_jupyter.schemas.images import SingleImage, plain_images
from fractal_jupyter.services.images import image_row

usual_paths = st.from_regex(r"/[a-z]{1,3}(/[a-z.]{1,3}){0,3}", fullmatch=True)
odd_steps = st.sampled_from(["a", ".", "..", "", ".hidden", "b ", " ", "é" * 130])
odd_paths = st.one_of(
    st.lists(odd_steps, max_size=5).map(lambda parts: "/" + "/".join(parts)),
    st.lists(odd_steps, min_size=1, max_size=3).map("/".join),
    st.sampled_from(["/", "//a", "///a", "/a/", " /a", "/a ", "/" + "x" * 2000, "s3://b/c"]),
    st.none(),
    st.integers(),
)
usual_keys = st.from_regex(r"[a-z_]{1,8}", fullmatch=True)
odd_keys = st.one_of(st.sampled_from([" k", "k ", "", "\t", "x" * 130, "😀" * 126]), st.text())
usual_scalars = st.one_of(st.booleans(), st.integers(-1000, 1000), st.text(max_size=5))
odd_scalars = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(),
    st.sampled_from(
        [
            "é" * 300,
            "é" * 600,
            2**63 - 1,
            -(2**63) + 1,
            2**63,
            -(2**63),
            None,
            [1],
            math.nan,
            -math.inf,
        ]
    ),
)
usual_images = st.fixed_dictionaries(
    {"zarr_url": usual_paths},
    optional={
        "origin": st.one_of(usual_paths, st.none()),
        "attributes": st.dictionaries(usual_keys, usual_scalars, max_size=4),
        "types": st.dictionaries(usual_keys, st.booleans(), max_size=3),
    },
)


def twisted(image, where, odd):
    """A usual image with one odd part, or an odd value in place of the image."""
    if where == "image":
        return odd
    if where in ("zarr_url", "origin", "attributes", "types", "unknown"):
        return {**image, where: odd}
    field, part = where.split(".")
    entries = dict(image.get(field, {}))
    entries.update({odd: True} if part == "key" else {"odd": odd})
    return {**image, field: entries}


images = st.one_of(
    usual_images,
    st.builds(twisted, usual_images, st.just("image"), st.sampled_from([None, [], "a", {}])),
    st.builds(twisted, usual_images, st.sampled_from(["zarr_url", "origin"]), odd_paths),
    st.builds(
        twisted,
        usual_images,
        st.sampled_from(["attributes", "types", "unknown"]),
        st.sampled_from([None, [], {}, 1]),
    ),
    st.builds(twisted, usual_images, st.sampled_from(["attributes.key", "types.key"]), odd_keys),
    st.builds(twisted, usual_images, st.just("attributes.value"), odd_scalars),
    st.builds(twisted, usual_images, st.just("types.value"), st.sampled_from([0, 1, None, "true"])),
)


def as_validated(image):
    try:
        return image_row(SingleImage.model_validate(image))
    except ValidationError:
        return None


@settings(max_examples=2000, deadline=None)
@given(images)
def test_an_image_accepted_as_plain_is_what_validation_gives(image):
    plain = plain_images([image])
    if plain is not None:
        # JSON tells 1 from 1.0 and True, where == does not.
        assert json.dumps(plain) == json.dumps([as_validated(image)])


def test_the_usual_images_are_plain_and_the_others_are_left_to_validation():
    usual = [
        {"zarr_url": "/z/plate.zarr/B/03/0", "attributes": {"well": "B03", "row": 3}},
        {"zarr_url": "/z/a.zarr", "origin": "/z/raw", "types": {"is_3D": False}, "x": 1},
        {"zarr_url": "/z/.hidden/a", "attributes": {"v": 1.5, "t": True, "s": "é" * 250}},
    ]
    assert plain_images(usual) == list(map(as_validated, usual))
    for unusual in (
        {"zarr_url": "/z/a/"},  # normalised by validation
        {"zarr_url": "/z/a", "attributes": {" well": 1}},  # key stripped
        {"zarr_url": "/z/a", "attributes": {"v": 2**63}},  # refused
        {"zarr_url": "/z/a", "types": {"t": 1}},  # refused (strict)
        {"zarr_url": "/z/a", "attributes": None},  # refused
    ):
        assert plain_images([*usual, unusual]) is None
