import jax.numpy as jnp
import pytest
from plait.core import (
    All,
    Any,
    BatchStat,
    Everything,
    FilterError,
    Not,
    Nothing,
    OfType,
    Param,
    PathContains,
    RngKey,
    Variable,
    WithTag,
    to_predicate,
    variable_type_from_name,
)

P = Param(jnp.ones(1))
B = BatchStat(jnp.zeros(1))


def test_type_filter():
    pred = to_predicate(Param)
    assert pred == OfType(Param)
    assert pred((), P) and not pred((), B)
    assert to_predicate(Variable)((), B)


def test_string_filter_matches_collection_name_and_tag():
    pred = to_predicate("params")
    assert pred((), P) and not pred((), B)
    assert to_predicate("batch_stats")((), B)
    key = RngKey(jnp.zeros(()), tag="dropout")
    assert to_predicate("dropout")((), key)
    assert not to_predicate("params")((), key)
    custom = variable_type_from_name("filter_test_coll", allow_register=True)
    assert to_predicate("filter_test_coll")((), custom(1.0))

    class SubParam(Param):
        pass

    assert to_predicate("params")((), SubParam(1.0))  # nearest registered ancestor


def test_constants():
    assert isinstance(to_predicate(...), Everything) and isinstance(to_predicate(True), Everything)
    assert isinstance(to_predicate(None), Nothing) and isinstance(to_predicate(False), Nothing)
    assert to_predicate(...)((), 1) and not to_predicate(None)((), 1)


def test_list_and_tuple_are_any():
    pred = to_predicate([Param, BatchStat])
    assert pred == Any(Param, BatchStat)
    assert pred((), P) and pred((), B) and not pred((), Variable(1))
    assert to_predicate((Param,))((), P)


def test_combinators():
    assert All(Param, PathContains("w"))(("w",), P)
    assert not All(Param, PathContains("w"))(("b",), P)
    assert Not(Param)((), B) and not Not(Param)((), P)
    assert Any(Nothing(), Everything())((), P)


def test_path_contains():
    assert PathContains("kernel")(("a", "kernel"), P)
    assert not PathContains("kern")(("a", "kernel"), P)
    assert PathContains("kern", exact=False)(("a", "kernel"), P)
    assert PathContains(0)(("layers", 0, "w"), P)


def test_with_tag():
    assert WithTag("x")((), Param(1.0, tag="x")) and not WithTag("x")((), Param(1.0))


def test_callables_pass_through():
    def fn(path, x):
        return path == ("a",)

    assert to_predicate(fn) is fn


def test_hashable_and_readable():
    filters = {OfType(Param), PathContains("a"), WithTag("t"), All(Param, "x"), Any(Param), Not(Param),
               Everything(), Nothing(), to_predicate("params")}
    assert len(filters) == 9
    assert OfType(Param) == OfType(Param) and hash(Any(Param, B.type)) == hash(Any(Param, BatchStat))
    assert repr(to_predicate([Param, "params"])) == "Any(OfType(Param), 'params')"
    assert repr(Not(PathContains("a", exact=False))) == "Not(PathContains('a', exact=False))"
    with pytest.raises(AttributeError, match="immutable"):
        OfType(Param).type = BatchStat


def test_invalid_filter():
    with pytest.raises(FilterError, match="Invalid filter 3 of type int"):
        to_predicate(3)
