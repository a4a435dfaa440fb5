"""Runs inside the hermes-agent venv: how Hermes itself resolves the config in ``$HERMES_HOME``.

Usage: ``python probe.py resolve TASK...`` or ``python probe.py normalize`` (pairs as JSON on
stdin). Prints one JSON object. Network is refused from inside the process (an audit hook), on top
of ``unshare -n`` where the test can use it, so nothing here can reach a real provider; attempts
are reported back in ``blocked``.

This file is plain Python for Hermes's interpreter: it must not import bhoga.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

blocked: list[str] = []
_LOCAL = {None, "localhost", "127.0.0.1", "::1", b"localhost"}


def _guard(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.getaddrinfo" and args[0] not in _LOCAL:
        blocked.append(f"resolve {args[0]!r}")
        raise OSError("network blocked by the bhoga compatibility probe")
    if event == "socket.connect":
        sock, address = args
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL:
            blocked.append(f"connect {address[0]!r}")
            raise OSError("network blocked by the bhoga compatibility probe")


sys.addaudithook(_guard)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def resolve(tasks: list[str]) -> dict[str, Any]:
    from hermes_cli.env_loader import load_hermes_dotenv

    load_hermes_dotenv()
    import yaml
    from agent.auxiliary_client import _resolve_task_provider_model
    from hermes_cli.auth import resolve_provider
    from hermes_cli.config import (
        DEFAULT_CONFIG,
        check_config_version,
        get_config_path,
        load_config,
        validate_config_structure,
    )
    from hermes_cli.doctor import collect_deprecated_config_keys
    from hermes_cli.fallback_config import get_fallback_chain
    from hermes_cli.model_normalize import _AGGREGATOR_PROVIDERS, normalize_model_for_provider
    from hermes_cli.runtime_provider import (
        _VALID_API_MODES,
        _get_model_config,
        _parse_api_mode,
        resolve_requested_provider,
        resolve_runtime_provider,
    )

    raw = yaml.safe_load(get_config_path().read_text(encoding="utf-8")) or {}
    cfg = load_config()
    model_cfg = _get_model_config()
    requested = resolve_requested_provider()
    canonical = resolve_provider(requested)
    out: dict[str, Any] = {
        "requested": requested,
        "canonical": canonical,
        "default": model_cfg.get("default"),
        "written_api_mode": model_cfg.get("api_mode"),
        "parsed_api_mode": _parse_api_mode(model_cfg.get("api_mode")),
        # agent_init normalises the main model except for aggregators (hermes-contract §0.6).
        "sent_model": model_cfg.get("default")
        if canonical in _AGGREGATOR_PROVIDERS
        else normalize_model_for_provider(model_cfg.get("default") or "", canonical),
        "config_version": list(check_config_version()),
        "latest_version": DEFAULT_CONFIG["_config_version"],
        "default_aux_tasks": [k for k, v in DEFAULT_CONFIG["auxiliary"].items() if isinstance(v, dict)],
        "valid_api_modes": sorted(_VALID_API_MODES),
        "structure_issues": [str(i) for i in validate_config_structure(cfg)],
        "deprecated": [list(d) for d in collect_deprecated_config_keys(raw)],
    }
    try:
        rt = resolve_runtime_provider()
        out["runtime"] = {k: rt.get(k) for k in ("provider", "api_mode", "base_url", "source")}
    except Exception as exc:
        out["runtime_error"] = _error(exc)
    chain = []
    for entry in get_fallback_chain(cfg):
        item: dict[str, Any] = {"provider": entry["provider"], "model": entry["model"]}
        try:
            item["canonical"] = resolve_provider(entry["provider"])
            item["sent_model"] = normalize_model_for_provider(entry["model"], item["canonical"])
        except Exception as exc:
            item["error"] = _error(exc)
        chain.append(item)
    out["fallbacks"] = chain
    aux: dict[str, Any] = {}
    for task in tasks:
        provider, model, base_url, _key, api_mode = _resolve_task_provider_model(task)
        task_cfg = (cfg.get("auxiliary") or {}).get(task) or {}
        aux_chain = []
        for entry in task_cfg.get("fallback_chain") or []:
            try:
                aux_chain.append([resolve_provider(entry["provider"]), entry.get("model")])
            except Exception as exc:
                aux_chain.append([entry.get("provider"), _error(exc)])
        aux[task] = {
            "provider": provider,
            "canonical": resolve_provider(provider) if provider not in (None, "auto", "main") else provider,
            "model": model,
            "sent_model": normalize_model_for_provider(model, provider) if model else None,
            "base_url": base_url,
            "api_mode": api_mode,
            "fallback_chain": aux_chain,
        }
    out["aux"] = aux
    out["config"] = cfg
    return out


def normalize(pairs: list[list[str]]) -> dict[str, Any]:
    from hermes_cli.model_normalize import normalize_model_for_provider

    return {"normalized": [normalize_model_for_provider(model, provider) for model, provider in pairs]}


def save(config: dict[str, Any]) -> dict[str, Any]:
    """Write ``config`` with Hermes's own writer, as ``hermes setup``/``hermes config set`` would."""
    from hermes_cli.config import get_config_path, save_config

    save_config(config)
    return {"path": str(get_config_path())}


def main() -> None:
    mode = sys.argv[1]
    if mode == "resolve":
        result = resolve(sys.argv[2:])
    elif mode == "normalize":
        result = normalize(json.load(sys.stdin))
    elif mode == "save":
        result = save(json.load(sys.stdin))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    result["blocked"] = blocked
    # On a line of its own: Hermes may have printed to stdout before.
    sys.stdout.write("\n" + json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main()
