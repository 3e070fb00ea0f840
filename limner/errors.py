"""Errors carrying OpenAI's status, type and code; rendered once, in api/errors.py."""

from typing import ClassVar


class StartupError(Exception):
    """The process cannot start as configured (a malformed data file, a missing model, an
    unavailable device); raised before serving, never on a request. The message says what is
    wrong and what to change: the CLI prints it alone, without a traceback."""


class ConfigurationError(StartupError):
    """A setting or a catalog entry that cannot be served as given."""


class LimnerError(Exception):
    """Base of every error a client may see. Plain data: no HTTP library involved."""

    status: ClassVar[int] = 400
    type: ClassVar[str] = "invalid_request_error"
    code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        param: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}


class InvalidRequest(LimnerError):
    """A request that is wrong in a way no more specific code describes."""


class InvalidValue(LimnerError):
    code = "invalid_value"


class InvalidType(LimnerError):
    code = "invalid_type"


class UnknownParameter(LimnerError):
    code = "unknown_parameter"

    def __init__(self, param: str) -> None:
        super().__init__(f"Unknown parameter: '{param}'.", param)


class MissingParameter(LimnerError):
    code = "missing_required_parameter"

    def __init__(self, param: str) -> None:
        super().__init__(f"Missing required parameter: '{param}'.", param)


class StringTooLong(LimnerError):
    code = "string_above_max_length"


class UnsupportedMimetype(LimnerError):
    code = "unsupported_file_mimetype"


class InvalidImageFile(LimnerError):
    code = "invalid_image_file"


class ImageTooLarge(LimnerError):
    code = "image_too_large"


class InvalidImageFormat(LimnerError):
    """DALL·E's 'Uploaded image must be a PNG and less than 4 MB.' family of refusals."""

    code = "invalid_image_format"


class InvalidMaskImage(LimnerError):
    type = "image_generation_user_error"
    code = "invalid_mask_image_format"


class InvalidImageUrl(LimnerError):
    code = "invalid_image_url"


class AuthenticationFailed(LimnerError):
    status = 401
    code = "invalid_api_key"


class MismatchedOrganization(LimnerError):
    status = 401
    code = "mismatched_organization"


class MismatchedProject(LimnerError):
    status = 401
    code = "mismatched_project"


class MissingScope(LimnerError):
    """A key of the wrong kind: admin keys on model endpoints, project keys on admin ones."""

    status = 401


class PermissionDenied(LimnerError):
    status = 403


class VerificationRequired(PermissionDenied):
    """OpenAI's verification gate: 403 with a null code, before anything is generated."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"Your organization must be verified to use the model `{model}`. Ask the operator of "
            "this server to verify your organization (`limner orgs verify`); it takes effect on "
            "the next request."
        )


class BelowUsageTier(LimnerError):
    code = "below_usage_tier"

    def __init__(self, model: str, tier: str) -> None:
        super().__init__(
            f"Your organization must qualify for at least usage tier {tier} to access '{model}'. "
            "Ask the operator of this server for a higher tier (`limner orgs set-tier`).",
            "model",
        )


class ModelNotFound(LimnerError):
    status = 404
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.")


class NotFound(LimnerError):
    status = 404
    code = "not_found"


class ServerError(LimnerError):
    status = 500
    type = "server_error"


class ModerationBlocked(LimnerError):
    """GPT image family wording; DALL·E models answer with ContentPolicyViolation."""

    type = "image_generation_user_error"
    code = "moderation_blocked"


class ContentPolicyViolation(LimnerError):
    code = "content_policy_violation"


class RateLimited(LimnerError):
    """A per-minute window is spent; the SDK retries after `retry-after`."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class TokensRateLimited(RateLimited):
    type = "tokens"


class QuotaExceeded(LimnerError):
    """A spend ceiling is reached: retrying never helps, so the SDK is told not to."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message, param, headers={"x-should-retry": "false"})


class OrganizationSpendLimitExceeded(QuotaExceeded):
    code = "organization_spend_limit_exceeded"


class ProjectSpendLimitExceeded(QuotaExceeded):
    code = "project_spend_limit_exceeded"


class OrganizationUsageLimitExceeded(QuotaExceeded):
    code = "organization_usage_limit_exceeded"


class RateLimitNotSet(LimnerError):
    code = "rate_limit_does_not_exist_for_org_and_model"

    def __init__(self, model: str) -> None:
        super().__init__(f"The rate limit for model {model} is not set for your organization")


class ServerOverloaded(LimnerError):
    """The engine's queue is full; the engine sets `retry-after` from its recent pace."""

    status = 503
    type = "server_error"
    code = None


class MainlineModelNotFound(LimnerError):
    """A Responses `model` this server does not answer to (the hosted API's 400, not 404)."""

    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The requested model '{model}' does not exist.", "model")


class PreviousResponseNotFound(LimnerError):
    code = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(
            f"Previous response with id '{response_id}' not found.", "previous_response_id"
        )


class ResponseNotFound(LimnerError):
    status = 404

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Response with id '{response_id}' not found.")


class InputItemNotFound(LimnerError):
    status = 404

    def __init__(self, item_id: str) -> None:
        super().__init__(
            f"Item with id '{item_id}' not found. Items are not persisted when `store` is set "
            "to false. Try again with `store` set to true, or remove this item from your input.",
            "input",
        )


class DuplicateInputItem(LimnerError):
    def __init__(self, item_id: str) -> None:
        super().__init__(
            f"Duplicate item found with id {item_id}. Remove duplicate items from your input "
            "and try again.",
            "input",
        )
