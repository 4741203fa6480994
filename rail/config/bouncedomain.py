"""The bounce domain template (``bounces.domain``): how a sender domain names its bounce
domain, and what makes a template usable. Pure, shared by the config reader and
:mod:`rail.bounces.verp`."""

from __future__ import annotations

__all__ = ["DEFAULT_TEMPLATE", "PLACEHOLDER", "bounce_domain", "template_problem"]

DEFAULT_TEMPLATE = "bounces.{domain}"
PLACEHOLDER = "{domain}"


def bounce_domain(template: str, domain: str) -> str:
    """The bounce domain of sender domain ``domain`` (lower-cased, no final dot)."""
    return template.replace(PLACEHOLDER, domain.lower().rstrip("."))


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot name bounce domains, or None: it must hold ``{domain}``
    once, as whole labels (``bounces.{domain}``, ``{domain}.rp.example.net``)."""
    if template.count(PLACEHOLDER) != 1:
        return "must contain {domain} exactly once"
    prefix, suffix = template.split(PLACEHOLDER)
    if prefix and not prefix.endswith("."):
        return "{domain} must follow a dot, e.g. bounces.{domain}"
    if suffix and not suffix.startswith("."):
        return "{domain} must be followed by a dot or end the template"
    if not prefix and not suffix:
        return "must add a label to {domain}, e.g. bounces.{domain}"
    if any(c in template.replace(PLACEHOLDER, "") for c in "{}@ "):
        return "must be a domain name around {domain}"
    return None
