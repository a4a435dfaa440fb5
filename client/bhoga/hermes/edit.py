"""Hermes integration, part 2: how to write it. A plan is applied to the text of a config file.

Pure (text in, text out): a round-trip YAML edit with ruamel, so the user's comments, key order and
unknown keys survive. ruamel is imported inside functions only: ``import bhoga`` must not pay for it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from bhoga.hermes.plan import (
    HERMES_CONFIG_VERSION,
    OWNED_PROVIDERS,
    PROVIDER_BOUND_KEYS,
    SUMMARY_KEYS,
    HermesConfigError,
    HermesPlan,
    HermesRoute,
)

# --------------------------------------------------------------------------------------------------
# Editing (pure: text in, text out)


#: Plain scalars that YAML 1.1 (Hermes parses with PyYAML) reads as something other than a string.
_YAML11_NON_STR: Final = re.compile(
    r"""(?x)^(?:
        [-+]?(?:\d[\d_]*)?\.?[\d_]*(?:[eE][-+]?\d+)?   # ints, floats, 1_000
      | [-+]?\d[\d_]*(?::[0-5]?\d)+(?:\.[\d_]*)?      # sexagesimal 1:30
      | 0x[0-9a-fA-F_]+ | 0b[01_]+
      | \d{4}-\d\d?-\d\d?(?:[Tt ].*)?                 # dates and timestamps
      | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
      | y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
      | null|Null|NULL|~|
    )$"""
)


def _scalar(value: str) -> Any:
    """``value`` as a string node that both YAML 1.2 (ruamel) and 1.1 (Hermes) read as a string."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    return DoubleQuotedScalarString(value) if _YAML11_NON_STR.match(value) else value


_KEY_ONLY: Final = re.compile(r"""^(?:[^#'"\s-][^#'"]*|'[^']*'|"[^"]*")\s*:\s*(?:#.*)?$""")


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the file uses them.

    ruamel re-indents the whole document with one setting, so it has to match the file's own or
    every nested line would show up in the diff. Defaults are what Hermes's own writer emits.
    """
    mapping: int | None = None
    seq: tuple[int, int] | None = None
    parent: int | None = None
    for line in text.splitlines():
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        lead = len(line) - len(line.lstrip(" "))
        if parent is not None:
            if body == "-" or body.startswith("- "):
                if seq is None:
                    rest = body[1:]
                    seq = (lead - parent, lead - parent + 1 + len(rest) - len(rest.lstrip(" ")))
            elif mapping is None and lead > parent:
                mapping = lead - parent
        if mapping is not None and seq is not None:
            break
        parent = lead if _KEY_ONLY.match(body) else None
    offset, sequence = seq if seq is not None else (0, 2)
    return mapping or 2, max(sequence, offset + 2), offset


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    # Never re-wrap a user's long lines.
    yaml.width = 1 << 16
    return yaml


class _Edit:
    """One edit of a loaded document; collects what it removed."""

    def __init__(self, doc: Any, plan: HermesPlan) -> None:
        self.doc = doc
        self.plan = plan
        self.removed: list[str] = []
        self.warnings: list[str] = []

    def section(self, key: str) -> Any:
        """The mapping at ``key``, created when absent or null; a wrong type is refused."""
        from ruamel.yaml.comments import CommentedMap

        value = self.doc.get(key)
        if value is None:
            value = CommentedMap()
            self.doc[key] = value
        elif not isinstance(value, dict):
            raise HermesConfigError(f"`{key}` is a {type(value).__name__}, not a mapping; fix it by hand")
        return value

    def drop_bound_keys(
        self, block: Any, where: str, old_provider: object, new_provider: str, rewritten: tuple[str, ...] = ()
    ) -> None:
        if str(old_provider or "").strip().lower() in ("", new_provider):
            return
        for key in PROVIDER_BOUND_KEYS:
            if key in block and key not in rewritten:
                del block[key]
                self.removed.append(f"{where}.{key}")

    def model(self) -> None:
        from ruamel.yaml.comments import CommentedMap

        plan = self.plan
        current = self.doc.get("model")
        block: Any
        if not isinstance(current, dict):
            if current is not None and not isinstance(current, str):
                raise HermesConfigError(f"`model` is a {type(current).__name__}; fix it by hand")
            block = CommentedMap()
            if "model" in self.doc:
                self.doc["model"] = block
            else:
                self.doc.insert(0, "model", block)
        else:
            block = current
            self.drop_bound_keys(block, "model", block.get("provider"), plan.main.provider, ("api_mode",))
        block["provider"] = _scalar(plan.main.provider)
        block["default"] = _scalar(plan.main.model)
        block["api_mode"] = _scalar(plan.api_mode)
        # Hermes reads ``default`` first; a lingering alias would only mislead a reader of the file.
        for alias in ("model", "name"):
            if alias in block:
                del block[alias]
                self.removed.append(f"model.{alias}")
        # Root-level ``provider``/``base_url`` are legacy; Hermes folds them into an empty ``model.*``.
        for key in ("provider", "base_url", "api_base"):
            if key in self.doc:
                del self.doc[key]
                self.removed.append(key)

    def _entry(self, route: HermesRoute, existing: Sequence[Any]) -> Any:
        from ruamel.yaml.comments import CommentedMap

        # Reuse the user's own entry for the same route: it may carry extra keys and comments.
        for entry in existing:
            if (str(entry.get("provider", "")).strip().lower(), str(entry.get("model", "")).strip()) == (
                route.provider,
                route.model,
            ):
                return entry
        entry = CommentedMap()
        entry["provider"] = _scalar(route.provider)
        entry["model"] = _scalar(route.model)
        return entry

    def fallbacks(self, key: str, container: Any, where: str) -> None:
        from ruamel.yaml.comments import CommentedSeq

        raw = container.get(key)
        if isinstance(raw, dict):
            raw = [raw]
        elif raw is not None and not isinstance(raw, list):
            raise HermesConfigError(f"`{where}` is a {type(raw).__name__}, not a list; fix it by hand")
        entries = [e for e in (raw or []) if isinstance(e, dict)]
        owned = [e for e in entries if str(e.get("provider", "")).strip().lower() in OWNED_PROVIDERS]
        kept = [e for e in (raw or []) if not any(e is o for o in owned)]
        new = [self._entry(route, owned) for route in self.plan.fallbacks]
        if not new and not kept:
            if key in container:
                del container[key]
                self.removed.append(where)
            return
        seq = raw if isinstance(raw, CommentedSeq) else CommentedSeq()
        seq[:] = new + kept
        container[key] = seq

    def auxiliary(self) -> None:
        if not self.plan.aux_tasks:
            return
        aux = self.section("auxiliary")
        from ruamel.yaml.comments import CommentedMap

        for task in self.plan.aux_tasks:
            block = aux.get(task)
            if block is None:
                block = CommentedMap()
                aux[task] = block
            elif not isinstance(block, dict):
                raise HermesConfigError(f"`auxiliary.{task}` is a {type(block).__name__}; fix it by hand")
            self.drop_bound_keys(block, f"auxiliary.{task}", block.get("provider"), self.plan.main.provider)
            block["provider"] = _scalar(self.plan.main.provider)
            block["model"] = _scalar(self.plan.main.model)
            # Hermes's per-task chain: without it a pinned task fails where the main model would fail over.
            self.fallbacks("fallback_chain", block, f"auxiliary.{task}.fallback_chain")

    def summary_keys(self, version: int | None) -> None:
        """Retire ``compression.summary_*`` exactly as Hermes would, so behaviour does not change.

        Below config version 17 Hermes's own migration moves them into ``auxiliary.compression``
        (only into empty fields), so do the same move now; from 17 on nothing reads them, so drop them.
        """
        comp = self.doc.get("compression")
        if not isinstance(comp, dict) or not any(k in comp for k in SUMMARY_KEYS):
            return
        # When bhoga pins auxiliary.compression itself, the old values have nowhere to go.
        migrate = (version is None or version < 17) and "compression" not in self.plan.aux_tasks
        for old, new in SUMMARY_KEYS.items():
            if old not in comp:
                continue
            value = str(comp.pop(old) or "").strip()
            self.removed.append(f"compression.{old}")
            if not migrate or not value or (old == "summary_provider" and value == "auto"):
                continue
            target = self.section("auxiliary")
            block = target.get("compression")
            if block is None:
                from ruamel.yaml.comments import CommentedMap

                block = target["compression"] = CommentedMap()
            current = str(block.get(new) or "").strip()
            if not current or (new == "provider" and current == "auto"):
                block[new] = _scalar(value)
                self.warnings.append(
                    f"moved compression.{old} to auxiliary.compression.{new}, as Hermes would"
                )

    def version(self) -> tuple[int | None, bool]:
        """The file's config version (``None`` when unknown), and whether it was added now."""
        raw = self.doc.get("_config_version")
        if raw is None:
            # Without it Hermes treats the file as version 0 and replays every migration over it.
            self.doc["_config_version"] = HERMES_CONFIG_VERSION
            return None, True
        try:
            return int(raw), False
        except (TypeError, ValueError):
            self.warnings.append(f"_config_version {raw!r} is not a number; left as it is")
            return None, False


class EditOutcome(msgspec.Struct, kw_only=True):
    text: str
    #: The plan as written: routes to providers this config disables are taken out.
    plan: HermesPlan
    removed: list[str]
    warnings: list[str]


def _respect_disabled(doc: Any, plan: HermesPlan) -> HermesPlan:
    """Leave out providers the user switched off in Hermes (``providers.<id>.enabled: false``).

    That flag is the one part of a ``providers.<built-in id>`` block Hermes honours: it refuses to
    start on such a provider ("provider 'x' is disabled"), so routing Hermes there would break it.
    """
    providers = doc.get("providers")
    if not isinstance(providers, dict):
        return plan
    off = frozenset(
        str(k).strip().lower()
        for k, v in providers.items()
        if isinstance(v, dict) and v.get("enabled") is False
    )
    if not off & {r.provider for r in (plan.main, *plan.fallbacks)}:
        return plan
    kept = plan.without(off, "disabled in this Hermes config (providers.<id>.enabled: false)")
    if kept is None:
        names = ", ".join(sorted(off))
        raise HermesConfigError(f"every provider bhoga would use is disabled here (providers: {names})")
    return kept


def edit_hermes_config(text: str, plan: HermesPlan) -> EditOutcome:
    """Apply ``plan`` to config text; raises ``HermesConfigError`` when it cannot be edited safely."""
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    yaml = _yaml()
    newline = "\r\n" if "\r\n" in text else "\n"
    text = text.replace("\r\n", "\n")
    try:
        doc = yaml.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HermesConfigError(f"not valid YAML{where}: {problem}") from exc
    preamble = ""
    if doc is None:
        # Empty, or only comments: ruamel has no node to hang those comments on, so keep them above.
        preamble = text if text.strip() else ""
        doc = CommentedMap()
    elif not isinstance(doc, dict):
        raise HermesConfigError(f"the top level is a {type(doc).__name__}, not a mapping")
    plan = _respect_disabled(doc, plan)
    edit = _Edit(doc, plan)
    old_version, added_version = edit.version()
    edit.summary_keys(old_version)
    edit.model()
    edit.fallbacks("fallback_providers", doc, "fallback_providers")
    edit.auxiliary()
    if isinstance(doc.get("fallback_model"), dict | list) and doc.get("fallback_model"):
        edit.warnings.append("the legacy fallback_model is tried after bhoga's fallback_providers")
    if added_version:
        # A version we added goes last, where Hermes's own writer puts it.
        doc.move_to_end("_config_version")

    mapping, sequence, offset = _guess_indent(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    from io import StringIO

    out = StringIO()
    yaml.dump(doc, out)
    body = out.getvalue()
    if preamble:
        body = preamble.rstrip("\n") + "\n" + body
    return EditOutcome(
        text=body.replace("\n", newline), plan=plan, removed=edit.removed, warnings=edit.warnings
    )


def unified_diff(before: str, after: str, path: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            f"{path} (now)",
            f"{path} (bhoga)",
        )
    )
