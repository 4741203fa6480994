"""twistd plugin: ``twistd rail --config FILE``."""

from twisted.application.service import ServiceMaker

rail = ServiceMaker(
    "Rail",
    "rail.tap",
    "Rail transactional email relay (mTLS submission, DKIM, MX delivery).",
    "rail",
)
