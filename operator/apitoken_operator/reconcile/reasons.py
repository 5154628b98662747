"""Reasons, named once and reused for conditions, Events and metrics."""

from enum import StrEnum


class Reason(StrEnum):
    # progress and success
    CREATED = "Created"
    UPDATED = "Updated"
    REPLACED = "Replaced"
    RECREATED = "Recreated"
    ROTATED = "Rotated"
    ADOPTED = "Adopted"
    RETIRED = "Retired"
    DELETED = "Deleted"
    ORPHANED = "Orphaned"
    SECRET_RESTORED = "SecretRestored"
    SECRET_MOVED = "SecretMoved"
    #: a shared Secret: this ApiToken's key removed (deleted, or its key or Secret renamed)
    SECRET_KEY_REMOVED = "SecretKeyRemoved"
    LOST_CREATE_CLEANED = "LostCreateCleanedUp"
    LOST_CREATE_UNPROVABLE = "LostCreateUnprovable"
    RECOVERED = "Recovered"
    READY = "Ready"
    CREATING = "Creating"
    PROGRESSING = "Progressing"
    # problems the user must fix (Stalled)
    INVALID_SPEC = "InvalidSpec"
    REJECTED_BY_DYNATRACE = "RejectedByDynatrace"
    POLICY_DENIED = "PolicyDenied"
    CONNECTION_MISSING = "ConnectionMissing"
    CONNECTION_INVALID = "ConnectionInvalid"
    #: the connection's URL is refused: plain http, or an internal address from a namespace Secret
    CONNECTION_NOT_ALLOWED = "ConnectionNotAllowed"
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    SECRET_NAME_TAKEN = "SecretNameTaken"
    #: a shared Secret's key is another ApiToken's (or holds data nobody recorded writing)
    SECRET_KEY_TAKEN = "SecretKeyTaken"
    ADOPTED_TOKEN_NOT_FOUND = "AdoptedTokenNotFound"
    ADOPTION_REFUSED = "AdoptionRefused"
    QUOTA_EXCEEDED = "QuotaExceeded"
    EXPIRED = "Expired"
    # problems that may pass by themselves (Reconciling, retried)
    THROTTLED = "Throttled"
    UNAVAILABLE = "DynatraceUnavailable"
    DELETE_BLOCKED = "DeleteBlocked"
    RELEASED = "Released"
