"""Product events and metered units for two customers."""

from __future__ import annotations

from spanmeter.sdk import configure, meter, track_event, usage_context

provider = configure()

with usage_context(customer_id="acme", user_id="alice"):
    track_event("trial_started", family="intent", product={"id": "reports", "name": "Reports"}, source="pricing-page")
    track_event("report_exported", family="activation", product="reports", format="pdf")
    meter("pages_rendered", 42)

# Without a context: the customer given here. The idempotency key makes a retried call count once.
meter("storage_gb_hours", "0.25", customer_id="globex", idempotency_key="globex:storage:2026-12-01T10")
track_event("plan_upgraded", family="expansion", customer_id="globex", developer_id="bob",
            email="bob@globex.example", account_domain="globex.example", campaign_id="winter-offer",
            idempotency_key="globex:upgrade:1")

try:
    meter("pages_rendered", 0, customer_id="acme")
except ValueError as error:
    print("refused:", error)  # quantity must be > 0, got 0

provider.shutdown()
