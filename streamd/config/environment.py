"""``STREAMD_…`` variables, checked before pydantic-settings reads them.

systemd's ``Environment=`` is how deploy.md says to set things, so the variables get the
care the TOML file gets: a list or table that is not JSON names its variable and shows the
form (pydantic-settings would only say that the section failed), and a variable that names
no setting (a typo in the prefix or the field) is warned about instead of ignored.
"""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Mapping

from pydantic import BaseModel

from streamd.errors import ConfigError

PREFIX = "STREAMD_"


def _is_structured(annotation: object) -> bool:
    """Whether a field's values come as JSON from the environment (lists, tables)."""
    origin = typing.get_origin(annotation) or annotation
    return origin in (list, dict, tuple, set)


def check_environment(
    environ: Mapping[str, str], sections: dict[str, type[BaseModel]]
) -> list[str]:
    """Raise :class:`ConfigError` for a structured value that is not JSON; return a warning
    for each ``STREAMD_`` variable that names no setting."""
    known = {
        f"{PREFIX}{s}__{f}".upper(): (s, f) for s, m in sections.items() for f in m.model_fields
    }
    warnings = []
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(PREFIX):
            continue
        if upper not in known:
            near = difflib.get_close_matches(upper, known, n=1, cutoff=0.8)
            hint = f" (did you mean {near[0]}?)" if near else ""
            warnings.append(f"environment variable {name} is not a streamd setting{hint}; ignored")
            continue
        section, field = known[upper]
        annotation = sections[section].model_fields[field].annotation
        if _is_structured(annotation):
            try:
                json.loads(value)
            except ValueError:
                raise ConfigError(
                    f"{section}.{field}",
                    f'{name}={value!r} is not JSON: write a list as {name}=\'["a/#", "b/#"]\'',
                ) from None
    return warnings
