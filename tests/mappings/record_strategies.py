"""Pieces shared by the round-trip property tests that draw records of the standard."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

from hypothesis import assume
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], data: dict[str, Any]) -> Model:
    """`data` as a `model`; a draw that breaks a cross-field rule is discarded, not a failure."""
    try:
        return model.model_validate(data)
    except ValidationError:
        assume(False)
        raise


def amounts() -> st.SearchStrategy[Decimal]:
    """Amounts in yuan with whole fen, from 0.01 to one billion."""
    return st.integers(min_value=1, max_value=10**11).map(lambda fen: Decimal(fen).scaleb(-2))
