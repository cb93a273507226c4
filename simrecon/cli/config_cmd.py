"""``simrecon config``: every training setting with its value, unit and help, from the fields' own documentation
(``config_io.describe``); ``--markdown`` prints docs/config.md."""

from __future__ import annotations

from rich.console import Console


def config_command(preset_name: str, settings: list[str], markdown: bool, console: Console) -> None:
    """Print the settings of ``preset_name`` with ``settings`` (``KEY=VALUE``) applied, one line each under its
    group: dotted name, value (``*``: not the default), unit, help."""
    from ..config_io import sections
    from ..train.config import config_markdown, format_value, parse_settings, preset

    if markdown:
        if settings:
            raise ValueError("--markdown documents the defaults and the presets: give it no --set")
        console.print(config_markdown(), markup=False, highlight=False, emoji=False, soft_wrap=True)
        return
    cfg = preset(preset_name)
    parse_settings(cfg, settings)
    groups = sections(cfg)
    rows = [d for _, own in groups for d in own]
    name_w = max(len(d.name) for d in rows)
    value_w = max(len(format_value(d.value)) for d in rows) + 1
    unit_w = max(len(d.unit) for d in rows)

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)

    say(f"Training settings of the '{preset_name}' preset{' with --set' if settings else ''} "
        f"(* differs from the default; change with: simrecon reconstruct --set KEY=VALUE)")
    for group, own in groups:
        say("")
        say(f"{group.name}: {group.help}" if group is not None else "top level")
        for d in own:
            value = format_value(d.value) + ("*" if d.value != d.default else " ")
            say(f"  {d.name:<{name_w}}  {value:>{value_w}}  {d.unit:<{unit_w}}  {d.help}")
