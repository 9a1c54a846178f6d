"""The SQL filters must agree with fractal-server's Python filters on every value."""

from hypothesis import given
from hypothesis import strategies as st

from fractal_jupyter.services.images import is_inside, match_key

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 0.0, 1.0, -0.0, 2**53, 2.0**53, 2**53 + 1, "1", "1.0", "true"]),
    st.text(max_size=5),
)


@given(scalars, scalars)
def test_match_key_equality_is_python_equality(a, b):
    assert (match_key(a) == match_key(b)) == (a == b)


def test_match_key_examples():
    assert match_key(1) == match_key(1.0) == match_key(True)
    assert match_key(0) == match_key(False) == match_key(-0.0)
    assert match_key("1") != match_key(1)
    assert match_key(0.1 + 0.2) != match_key(0.3)


def test_is_inside_is_a_path_prefix_test():
    assert is_inside("/a/b/c", "/a/b")
    assert is_inside("/a/b/c", "/")
    assert not is_inside("/a/bc/d", "/a/b")
    assert not is_inside("/a/b", "/a/b")
