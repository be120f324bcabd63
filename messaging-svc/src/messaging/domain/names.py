"""Names shared by storage, events and the API: channels, statuses, block reasons, event kinds. Stored
and emitted as the lower-case names; the proto enums are mapped at the edge with these tables."""

from __future__ import annotations

from mcloud.messaging.v1 import messaging_pb2 as pb

CHANNELS = ("email", "sms", "push", "in_app", "webhook")
CHANNEL_OF = {pb.CHANNEL_EMAIL: "email", pb.CHANNEL_SMS: "sms", pb.CHANNEL_PUSH: "push",
              pb.CHANNEL_IN_APP: "in_app", pb.CHANNEL_WEBHOOK: "webhook", pb.CHANNEL_BEST: "best"}
CHANNEL_ENUM = {name: value for value, name in CHANNEL_OF.items()}

STATUS_ENUM = {"queued": pb.MESSAGE_STATUS_QUEUED, "sent": pb.MESSAGE_STATUS_SENT,
               "delivered": pb.MESSAGE_STATUS_DELIVERED, "opened": pb.MESSAGE_STATUS_OPENED,
               "clicked": pb.MESSAGE_STATUS_CLICKED, "bounced": pb.MESSAGE_STATUS_BOUNCED,
               "failed": pb.MESSAGE_STATUS_FAILED, "suppressed": pb.MESSAGE_STATUS_SUPPRESSED,
               "dropped": pb.MESSAGE_STATUS_DROPPED}
# later statuses imply earlier ones: a late "delivered" never moves an opened message back
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "opened": 3, "clicked": 4}
TERMINAL = frozenset({"bounced", "failed", "suppressed", "dropped"})

BLOCK_ENUM = {"no_consent": pb.BLOCK_REASON_NO_CONSENT, "unsubscribed": pb.BLOCK_REASON_UNSUBSCRIBED,
              "suppressed": pb.BLOCK_REASON_SUPPRESSED, "quiet_hours": pb.BLOCK_REASON_QUIET_HOURS,
              "frequency_cap": pb.BLOCK_REASON_FREQUENCY_CAP, "no_address": pb.BLOCK_REASON_NO_ADDRESS,
              "template_error": pb.BLOCK_REASON_TEMPLATE_ERROR, "channel_disabled": pb.BLOCK_REASON_CHANNEL_DISABLED,
              "profile_erased": pb.BLOCK_REASON_PROFILE_ERASED,
              "enrollment_ended": pb.BLOCK_REASON_ENROLLMENT_ENDED}

EVENT_KIND_OF = {pb.MESSAGE_EVENT_KIND_DELIVERED: "delivered", pb.MESSAGE_EVENT_KIND_OPENED: "opened",
                 pb.MESSAGE_EVENT_KIND_CLICKED: "clicked", pb.MESSAGE_EVENT_KIND_BOUNCED: "bounced",
                 pb.MESSAGE_EVENT_KIND_FAILED: "failed", pb.MESSAGE_EVENT_KIND_COMPLAINED: "complained",
                 pb.MESSAGE_EVENT_KIND_UNSUBSCRIBED: "unsubscribed"}

SUPPRESSION_REASON_OF = {pb.SUPPRESSION_REASON_UNSUBSCRIBE: "unsubscribe",
                         pb.SUPPRESSION_REASON_HARD_BOUNCE: "hard_bounce",
                         pb.SUPPRESSION_REASON_COMPLAINT: "complaint",
                         pb.SUPPRESSION_REASON_INVALID_ADDRESS: "invalid_address",
                         pb.SUPPRESSION_REASON_MANUAL: "manual"}
SUPPRESSION_REASON_ENUM = {name: value for value, name in SUPPRESSION_REASON_OF.items()}

QUIET_OF = {pb.QUIET_HOURS_BEHAVIOR_UNSPECIFIED: "hold", pb.QUIET_HOURS_BEHAVIOR_HOLD: "hold",
            pb.QUIET_HOURS_BEHAVIOR_DROP: "drop"}
