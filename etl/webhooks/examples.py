"""The example deliveries of WebEngage's webhook documentation (seed 003), one per shape, for tests, the
benchmark and trying a receiver by hand.

Changes from the seed: its ``// ...`` comment is removed (not JSON), its user ids (e-mail addresses the
scrape redacted) are replaced by example addresses, and the "global application events" section repeats
the system example, so the application example is a custom event built on the same envelope
(``category: "application"``) as the contract describes. ``eventType`` values are illustrative: WebEngage
sends the parameter; the receiver records it as given.
"""

from __future__ import annotations

from typing import Any, Final

_PUSH_CONTENT: Final = (
    '{"identifier":"1if30if","experimentId":"20hlgbg","packageName":null,"title":"Master App",'
    '"message":"How are you today ?","image":null,"cta":{"id":"3d7630c9","type":"DEEP_LINK",'
    '"actionLink":"webengage://com.webengage.testapp1/start_activity/com.webenagege.testapp1.Activity1",'
    '"actionText":null,"templateId":null},"custom":[{"key":"theKey","value":"whatIsKey"}],'
    '"expandableDetails":{"title":null,"image":"https://webengage.net/wk-test-static-files/~99199077/'
    '6313a242-91a5-46b8-96b5-1598365a509a.jpg","message":null,"cta1":null,"cta2":null,"cta3":null,'
    '"style":"BIG_PICTURE","category":null},"tokens":null}'
)

#: Events webhook / global system events webhook: a push notification accepted.
PUSH_ACCEPTED: Final[dict[str, Any]] = {
    "event_data": {"result": "SUCCESS"},
    "system_data": {
        "variation_id": "1if30if",
        "sdk": "ANDROID",
        "scope": "~7l798ci",
        "id": "20hlgbg",
        "push_notification_content": _PUSH_CONTENT,
    },
    "event_time": "2016-06-01T15:53:59+0000",
    "event_name": "push_notification_accepted",
    "license_code": "~99199077",
    "category": "system",
    "user_id": "user.one@example.com",
    "anonymous_id": "0000014a-a2da-cfd3-91c7-0252d7df1a4c",
}

#: The same webhooks: a push notification rejected.
PUSH_REJECTED: Final[dict[str, Any]] = {
    "event_data": {"result": "UNAVAILABLE"},
    "system_data": {
        "variation_id": "1if30if",
        "sdk": "ANDROID",
        "scope": "~7l799ci",
        "id": "20hlgbg",
        "push_notification_content": "GCM_ERROR",
    },
    "event_time": "2016-06-01T15:53:58+0000",
    "event_name": "push_notification_rejected",
    "license_code": "~99199077",
    "category": "system",
    "user_id": "user.one@example.com",
    "anonymous_id": "0000014a-a2da-cfd3-91c7-0252d7df1a4c",
}

#: Global application events webhook: a custom event sent through the SDK or REST API.
CUSTOM_EVENT: Final[dict[str, Any]] = {
    "event_data": {"product_id": "SKU-1042", "price": 499.5, "currency": "INR", "quantity": 2},
    "system_data": {"sdk": "WEB", "id": "c8a1e2"},
    "event_time": "2016-06-01T16:02:11+0000",
    "event_name": "Added To Cart",
    "license_code": "~99199077",
    "category": "application",
    "user_id": "user.two@example.com",
    "anonymous_id": "0000014a-a2da-cfd3-91c7-0252d7df1a4d",
}

#: Journey webhook: a journey was activated (account category, resource + version, no system_data).
JOURNEY_ACTIVATED: Final[dict[str, Any]] = {
    "category": "account",
    "resource": "Journey",
    "version": 1,
    "event_name": "journey_activated",
    "event_time": "2017-03-06T11:00:52+0000",
    "license_code": "311c48b3",
    "user_id": "marketer@example.com",
    "event_data": {
        "creationTime": "2017-03-06T11:00:52+0000",
        "createdBy": "marketer@example.com",
        "name": "Repeat Order Journey",
        "id": "abn3jj5",
        "activatedBy": "marketer@example.com",
        "activationTime": "2017-03-06T11:00:52+0000",
        "status": "ACTIVE",
        "tags": ["premium-user"],
    },
}

#: ``(eventType, body)`` for every shape.
EXAMPLES: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("push_notification_accepted", PUSH_ACCEPTED),
    ("GLOBAL_SYSTEM_EVENTS", PUSH_REJECTED),
    ("GLOBAL_APPLICATION_EVENTS", CUSTOM_EVENT),
    ("JOURNEY", JOURNEY_ACTIVATED),
)
