"""The ``pip install`` command a brainset's missing packages need, checked first.

Upstream pins what each brainset needs for the throwaway environment that
``brainsets prepare`` builds (``dandi==0.74.0``). Here they go into the project's
environment, beside Kedro, where a pin can clash: dandi 0.74.0 needs ``click<8.2``
and Kedro 1.7 ``click>=8.2``, so that command would downgrade click under Kedro.

:func:`advise_install` asks pip's own resolver (``pip install --dry-run --report``,
with the environment's pip configuration: index, ``--find-links``, proxies) what
the command would install, and checks each package it would replace against the
requirements of every installed distribution. A pin that clashes is relaxed to the
newest version that fits (resolved with the clashing packages held at their installed
versions), and the advice says so; when no version fits, it says which package
clashes with what. When pip cannot reach the package index, the command is given
unchecked, with that said.

The resolver takes seconds to minutes and may need the network, so it is asked only
when packages are missing, and at most once per set of requirements in a given
environment: the answer is kept in ``install_advice.json`` of the cache folder
(``$BRAINSETS_KEDRO_CACHE_DIR``, else ``$XDG_CACHE_HOME/brainsets-kedro`` or
``~/.cache/brainsets-kedro``) under the environment's fingerprint (this Python, its
installed distributions, pip's ``PIP_*`` settings). ``kedro brainset import`` and
``kedro run`` so give the same advice, and a later run pays nothing for it. A pin
the advice relaxed is recorded too: once the relaxed version is installed, the run
accepts it without a warning.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from brainsets_kedro.upstream.installcache import (
    KEPT_ENVIRONMENTS,
    environment_fingerprint,
    installed_distributions,
    read_cache,
    write_cache,
)
from brainsets_kedro.upstream.metadata import install_command

logger = logging.getLogger(__name__)

PIP_TIMEOUT = 120
"""Seconds one resolution may take before the command is given unchecked."""
_UNREACHABLE = (
    "NewConnectionError",
    "ConnectTimeout",
    "Could not fetch URL",
    "Temporary failure in name resolution",
    "ProxyError",
    "Max retries exceeded",
)


@dataclass(frozen=True)
class Clash:
    """Installing ``package==version`` would break installed distributions."""

    package: str
    version: str
    installed: str
    dependents: tuple[str, ...]
    """Each as ``"kedro 1.7.0 (click>=8.2)"``."""

    def __str__(self) -> str:
        return (
            f"{self.package} {self.version} (installed: {self.installed}), which "
            f"{', '.join(self.dependents)} "
            f"{'does' if len(self.dependents) == 1 else 'do'} not allow"
        )


@dataclass(frozen=True)
class InstallAdvice:
    """What to install, and what the check found."""

    requirements: tuple[str, ...]
    """The requirements to install (a clashing pin relaxed)."""
    fits: bool | None
    """``True``: installs beside this environment; ``False``: no version fits;
    ``None``: not checked."""
    notes: tuple[str, ...] = ()
    """Relaxed pins, clashes, or why it was not checked."""
    relaxed: tuple[tuple[str, str], ...] = ()
    """``(requirement as pinned, as relaxed)`` of each pin the advice relaxed."""

    @property
    def command(self) -> str:
        return install_command(self.requirements)

    def __str__(self) -> str:
        if self.fits is False:
            return " ".join(self.notes)
        return " ".join((self.command, *(f"({note})" for note in self.notes)))


@dataclass(frozen=True)
class _Resolution:
    install: dict[str, tuple[str, list[str], bool]]
    """``name: (version, requires_dist, requested)`` of what pip would install."""
    error: str | None = None
    unreachable: bool = False


def _dry_run(
    requirements: Iterable[str], constraints: Iterable[str] = ()
) -> _Resolution:
    """What ``pip install requirements`` would install here (pip's resolver)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [
            *(sys.executable, "-m", "pip", "install", "--dry-run", "--quiet"),
            *("--report", str(report), "--disable-pip-version-check", "--no-input"),
            *("--retries", "1", "--timeout", "15"),
        ]
        constraints = list(constraints)
        if constraints:
            (Path(tmp) / "constraints.txt").write_text("\n".join(constraints) + "\n")
            command += ["-c", str(Path(tmp) / "constraints.txt")]
        try:
            done = subprocess.run(
                [*command, *requirements],
                capture_output=True,
                text=True,
                timeout=PIP_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return _Resolution({}, f"pip took over {PIP_TIMEOUT} s", unreachable=True)
        if done.returncode != 0 or not report.is_file():
            errors = [
                line.removeprefix("ERROR: ").strip()
                for line in done.stderr.splitlines()
                if line.startswith("ERROR: ")
            ]
            return _Resolution(
                {},
                errors[0] if errors else done.stderr.strip()[-300:],
                unreachable=any(word in done.stderr for word in _UNREACHABLE),
            )
        items = json.loads(report.read_text())["install"]
    return _Resolution(
        {
            canonicalize_name(item["metadata"]["name"]): (
                item["metadata"]["version"],
                item["metadata"].get("requires_dist") or [],
                bool(item.get("requested")),
            )
            for item in items
        }
    )


def _clashes(resolution: _Resolution) -> list[Clash]:
    """The packages the resolution would replace by a version that an installed
    distribution does not allow."""
    installed = installed_distributions()
    broken: dict[str, list[str]] = {}
    for dependent in installed.values():
        for text in dependent.requires or []:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            name = canonicalize_name(requirement.name)
            if name not in resolution.install or name not in installed:
                continue
            if not requirement.specifier.contains(
                resolution.install[name][0], prereleases=True
            ):
                broken.setdefault(name, []).append(
                    f"{dependent.metadata['Name']} {dependent.version} ({requirement})"
                )
    return [
        Clash(
            installed[name].metadata["Name"],
            resolution.install[name][0],
            installed[name].version,
            tuple(sorted(dependents, key=str.lower)),
        )
        for name, dependents in sorted(broken.items())
    ]


def _needs(resolution: _Resolution, name: str) -> set[str]:
    """``name`` and everything it pulls in, within the resolution."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen or current not in resolution.install:
            continue
        seen.add(current)
        for text in resolution.install[current][1]:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if not requirement.marker or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def _relaxed(requirement: Requirement) -> str:
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    marker = f"; {requirement.marker}" if requirement.marker else ""
    return f"{requirement.name}{extras}{marker}"


def advise_install(requirements: tuple[str, ...]) -> InstallAdvice:
    """The command that installs ``requirements`` beside this environment: pip's
    resolver is asked once per set of requirements and environment, the answer kept
    in the cache folder (see the module's docstring).

    Args:
        requirements: The missing packages, as the brainset pins them.

    Returns:
        The advice: the requirements as given when they fit, with a clashing pin
        relaxed to the newest version that fits (and a note), or, when none fits,
        notes naming the clash; unchecked (``fits=None``) when pip cannot resolve
        (the package index cannot be reached, say).
    """
    key = "\n".join(requirements)
    cache = read_cache()
    fingerprint = environment_fingerprint()
    known = cache["advice"].get(fingerprint, {}).get(key)
    if known is not None:
        return InstallAdvice(
            tuple(known["requirements"]),
            known["fits"],
            tuple(known["notes"]),
            tuple(map(tuple, known["relaxed"])),
        )
    advice = _resolve(requirements)
    answers = cache["advice"].pop(fingerprint, {})  # re-added last: the newest
    answers[key] = {
        "requirements": advice.requirements,
        "fits": advice.fits,
        "notes": advice.notes,
        "relaxed": advice.relaxed,
    }
    cache["advice"][fingerprint] = answers
    for old in list(cache["advice"])[:-KEPT_ENVIRONMENTS]:
        del cache["advice"][old]
    cache["relaxed"].update(dict(advice.relaxed))
    write_cache(cache)
    return advice


def relaxed_pin(requirement: str) -> str | None:
    """What an earlier advice relaxed ``requirement`` to (``bk-tool==2.0`` for
    ``bk-tool==1.0``), if it did; read from the cache, no resolver.

    Args:
        requirement: A requirement as a brainset pins it.

    Returns:
        The relaxed requirement, or ``None``.
    """
    try:
        text = str(Requirement(requirement))
    except InvalidRequirement:
        return None
    return read_cache()["relaxed"].get(text)


def _resolve(requirements: tuple[str, ...]) -> InstallAdvice:
    """:func:`advise_install`, computed (pip's resolver, once or twice)."""
    logger.info(
        "Checking '%s' against this environment with pip's resolver.",
        install_command(requirements),
        extra={"markup": False},
    )
    first = _dry_run(requirements)
    if first.error is not None:
        why = (
            "the package index could not be reached"
            if first.unreachable
            else f"pip: {first.error}"
        )
        return InstallAdvice(requirements, None, (f"not checked: {why}",))
    clashes = _clashes(first)
    if not clashes:
        return InstallAdvice(requirements, True)
    clashing = {canonicalize_name(c.package) for c in clashes}
    parsed = [Requirement(r) for r in requirements]
    culprits = [
        r for r in parsed if _needs(first, canonicalize_name(r.name)) & clashing
    ]
    held = sorted({f"{c.package}=={c.installed}" for c in clashes})
    unpinned = [_relaxed(r) if r in culprits else str(r) for r in parsed]
    second = _dry_run(unpinned, held) if culprits else None
    if second is None or second.error is not None or _clashes(second):
        clash_text = "; ".join(map(str, clashes))
        culprit_text = ", ".join(str(r) for r in culprits) or ", ".join(requirements)
        return InstallAdvice(
            requirements,
            False,
            (
                f"{install_command(requirements)} would install {clash_text}, and "
                f"no version of {', '.join(r.name for r in culprits or parsed)} "
                f"fits beside it ({culprit_text} as pinned). Run this brainset in "
                "an environment of its own (see docs/coming-from-brainsets.md).",
            ),
        )
    final: list[str] = []
    notes: list[str] = []
    relaxed: list[tuple[str, str]] = []
    for requirement in parsed:
        if requirement not in culprits:
            final.append(str(requirement))
            continue
        version = second.install[canonicalize_name(requirement.name)][0]
        chosen = f"{_relaxed(requirement).split(';')[0]}=={version}"
        if requirement.marker:
            chosen += f"; {requirement.marker}"
        final.append(chosen)
        relaxed.append((str(requirement), chosen))
        why = "; ".join(
            str(c) for c in clashes if canonicalize_name(c.package) in clashing
        )
        notes.append(
            f"{requirement} as pinned would install {why}; {chosen} is the newest "
            f"version that fits{_older(requirement, version)}"
        )
    return InstallAdvice(tuple(final), True, tuple(notes), tuple(relaxed))


def _older(requirement: Requirement, version: str) -> str:
    pinned = [s.version for s in requirement.specifier if s.operator == "=="]
    try:
        if pinned and Version(version) < Version(pinned[0]):
            return " (older than the pinned one)"
    except InvalidVersion:
        pass
    return ""
