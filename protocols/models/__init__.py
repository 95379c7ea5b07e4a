"""Device models: register maps, declared params and fault catalogues (data), and their loader.

A model is one TOML file, ``protocols/models/<id>.toml`` or a file in a site's
own model folder; the format is in docs/models/format.md. The catalogue is
per model on purpose: the same code means different things on different
devices (ERR-1 is magnetic tampering on a residential meter and a low
internal battery on an MHCG controller).

The checker never stops at the first problem. A person mapping a vendor's
device fixes a file in one pass only if every problem is listed at once, each
as ``<file>: <key path>: <what is wrong>``, in file order.

    types.py            Model, Param, Fault, Text; the vocabularies; leaves, trigger_text
    common.py           the params every device takes (flapping), whatever its model
    check_base.py       the problem list and scalar checks
    check_registers.py  [model] and [[register]]
    check_params.py     [[param]] and the triggers that name one
    check_faults.py     [[fault]]: texts and triggers
    checker.py          a file's data -> Model, problems in section order
    load.py             files and folders -> Models, the cache
    catalogue.py        the packaged models with a site folder over them (load_catalogue)

This package imports nothing from gateway/: the simulators and the firmware
tests read the same models.
"""
from __future__ import annotations

from .catalogue import BrokenFile, Catalogue, Source, load_catalogue
from .common import COMMON_PARAMS, PARAM_HINTS, declared_params, param_users
from .load import (
    check_file,
    clear_cache,
    default_directory,
    load_model,
    load_models,
    validate_all,
)
from .types import (
    CLEARED_BY,
    COMBINERS,
    KINDS,
    LIMIT_KEYS,
    PARAM_TYPES,
    RULE_KEYS,
    SEVERITIES,
    Fault,
    Model,
    ModelError,
    Param,
    Text,
    leaves,
    number_text,
    trigger_text,
    value_kind,
)

__all__ = [
    "CLEARED_BY", "COMBINERS", "COMMON_PARAMS", "KINDS", "LIMIT_KEYS", "PARAM_HINTS", "PARAM_TYPES",
    "RULE_KEYS", "SEVERITIES", "BrokenFile", "Catalogue", "Fault", "Model", "ModelError", "Param", "Source",
    "Text", "check_file", "clear_cache", "declared_params", "default_directory", "leaves", "load_catalogue",
    "load_model", "load_models", "number_text", "param_users", "trigger_text", "validate_all", "value_kind",
]
