"""Judge a Content-Security-Policy by the MDN HTTP Observatory's published rules.

The rules are the Observatory's ``content-security-policy`` test (mdn/mdn-http-observatory,
``src/analyzer/tests/csp.js`` and ``cspParser.js``), in its order:

- no enforced policy (none, or only ``Content-Security-Policy-Report-Only``): fail;
- a policy that does not parse (a directive repeated, other than ``report-uri``/``report-to``;
  ``'strict-dynamic'`` without a nonce or hash): fail;
- scripts from anywhere or inline: ``script-src`` (else ``default-src``, else ``*``) holding
  ``'unsafe-inline'``, ``data:`` or a broad source (``*``, ``https:``, ``http:``…), or ``object-src``
  (else ``default-src``, else ``*``) holding a broad source: fail. A nonce or hash makes browsers
  ignore ``'unsafe-inline'``, and ``'strict-dynamic'`` with one makes them ignore broad sources;
- active content over ``http:``/``ftp:`` on an HTTPS page: fail;
- ``'unsafe-eval'`` in ``script-src`` or ``style-src``: fail;
- otherwise pass (``http:`` images or media, or ``'unsafe-inline'`` styles, only lower the
  Observatory's score).

The one difference: only headers are read (bodies never are), so a policy in a ``<meta>`` tag is
not seen. Several policies are all enforced by browsers, so the strictest one counts.
"""

from __future__ import annotations

from dataclasses import dataclass

DANGEROUSLY_BROAD = frozenset({"ftp:", "http:", "https:", "*", "http://*", "http://*.*", "https://*", "https://*.*"})
UNSAFE_INLINE = frozenset({"'unsafe-inline'", "data:"})
PASSIVE_DIRECTIVES = ("img-src", "media-src")
NONCE_HASH_PREFIXES = ("'sha256-", "'sha384-", "'sha512-", "'nonce-")
REPEATABLE_DIRECTIVES = frozenset({"report-uri", "report-to"})
MIN_POLICY_CHARS = len("img-src") - 1  # the Observatory's shortest acceptable policy

Policy = dict[str, set[str]]


class CspInvalid(ValueError):
    """The policy does not parse (the Observatory's ``csp-header-invalid``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CspVerdict:
    """Whether the enforced policy restricts scripts, and why not when it does not."""

    passed: bool
    reason: str


def parse_policies(headers: list[str]) -> list[Policy]:
    """Every policy of the ``Content-Security-Policy`` headers (a comma separates policies).

    Directives and sources are lowercased; a ``*-src`` directive without sources is ``'none'``.
    Raises ``CspInvalid``.
    """
    policies = []
    for text in (part.strip() for header in headers for part in header.split(",")):
        if len(text) < MIN_POLICY_CHARS:
            raise CspInvalid(f"policy {text!r} is empty or too short")
        policy: Policy = {}
        for entry in text.split(";"):
            parts = entry.split()
            if not parts:
                continue
            directive, sources = parts[0].lower(), parts[1:]
            if directive in policy:
                if directive in REPEATABLE_DIRECTIVES:
                    continue
                raise CspInvalid(f"directive {directive} is repeated")
            values = {s.lower() for s in sources}
            policy[directive] = values or ({"'none'"} if directive.endswith("-src") else set())
        policies.append(policy)
    return policies


def judge(headers: list[str], *, report_only: bool, https: bool) -> CspVerdict:
    """The verdict on a response's ``Content-Security-Policy`` headers.

    Args:
        headers: every ``Content-Security-Policy`` value of the response.
        report_only: the response also sends ``Content-Security-Policy-Report-Only``.
        https: the page was fetched over HTTPS (then ``http:`` sources are insecure).
    """
    if not headers:
        if report_only:
            return CspVerdict(passed=False, reason="only Content-Security-Policy-Report-Only (enforces nothing)")
        return CspVerdict(passed=False, reason="missing")
    try:
        verdicts = [_judge_policy(policy, https=https) for policy in parse_policies(headers)]
    except CspInvalid as exc:
        return CspVerdict(passed=False, reason=f"invalid: {exc}")
    return next((v for v in verdicts if v.passed), verdicts[0])


def _judge_policy(policy: Policy, *, https: bool) -> CspVerdict:
    default = policy.get("default-src")
    script = set(policy.get("script-src") or default or {"*"})
    objects = set(policy.get("object-src") or default or {"*"})
    style = set(policy.get("style-src") or default or {"*"})
    for sources in (script, style):
        if _has_nonce_or_hash(sources):
            sources.discard("'unsafe-inline'")  # CSP2+: a nonce or hash disables 'unsafe-inline'
    if "'strict-dynamic'" in script:
        if not _has_nonce_or_hash(script):
            raise CspInvalid("'strict-dynamic' without a nonce or hash")
        # CSP3: with 'strict-dynamic', host and scheme sources and 'self' are ignored.
        script = {s for s in script if s != "'self'" and not s.startswith(tuple(DANGEROUSLY_BROAD))}
    unsafe = sorted(script & (DANGEROUSLY_BROAD | UNSAFE_INLINE))
    if unsafe:
        where = "script-src" if "script-src" in policy else ("default-src" if default else "no script-src/default-src")
        return CspVerdict(passed=False, reason=f"scripts allowed from {' '.join(unsafe)} ({where})")
    broad_objects = sorted(objects & DANGEROUSLY_BROAD)
    if broad_objects:
        where = "object-src" if "object-src" in policy else ("default-src" if default else "no object-src/default-src")
        return CspVerdict(passed=False, reason=f"plugins allowed from {' '.join(broad_objects)} ({where})")
    active = [s for d, sources in policy.items() if d not in PASSIVE_DIRECTIVES and d != "script-src" for s in sources]
    active += script
    insecure = sorted({s for s in active if s.startswith(("http:", "ftp:"))})
    if https and insecure:
        return CspVerdict(passed=False, reason=f"active content allowed over {' '.join(insecure)}")
    if "'unsafe-eval'" in script | style:
        return CspVerdict(passed=False, reason="'unsafe-eval' allowed")
    return CspVerdict(passed=True, reason="; ".join(f"{d} {' '.join(sorted(s))}".strip() for d, s in policy.items()))


def _has_nonce_or_hash(sources: set[str]) -> bool:
    return any(s.startswith(NONCE_HASH_PREFIXES) for s in sources)


def frame_ancestors(headers: list[str]) -> set[str] | None:
    """The ``frame-ancestors`` sources of the enforced policies (None: not set, or the policy is invalid)."""
    try:
        policies = parse_policies(headers)
    except CspInvalid:
        return None
    found = [policy["frame-ancestors"] for policy in policies if "frame-ancestors" in policy]
    if not found:
        return None
    # Every policy is enforced: the one that is not broad wins.
    return next((sources for sources in found if not sources & DANGEROUSLY_BROAD), found[0])
