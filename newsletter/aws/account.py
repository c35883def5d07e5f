"""The AWS account as ``ses setup`` and ``ses doctor`` see it: one boto3 session, its clients,
and AWS's errors in our words.

Region, endpoints and credentials come from boto3's own chain, as for sending
(``transports.ses``): ``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL_SESV2``,
``AWS_ENDPOINT_URL_SNS``, ``AWS_ENDPOINT_URL_SQS``, ``AWS_ENDPOINT_URL_STS``, instance roles.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from newsletter.errors import NewsletterError
from newsletter.transports.ses import aws_session, make_client

# Not-found answers, by service: a resource that is not there yet is what setup creates.
_MISSING = {"NotFoundException", "NotFound", "ResourceNotFoundException",
            "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_DENIED = {"AccessDenied", "AccessDeniedException", "AuthorizationError", "NotAuthorized"}
# Control-plane calls are rare and cheap: botocore's standard retries, short timeouts.
_CONFIG = Config(connect_timeout=5, read_timeout=20, retries={"mode": "standard",
                                                               "total_max_attempts": 4})
# botocore's service names, and the IAM prefixes its actions carry.
_IAM_PREFIX = {"sesv2": "ses", "sns": "sns", "sqs": "sqs", "sts": "sts"}


class AwsError(NewsletterError):
    """An AWS call failed; the message names the call, AWS's words and, for a refusal, the IAM
    action to allow. ``denied`` tells a missing permission from other failures."""

    def __init__(self, message: str, *, denied: bool = False):
        super().__init__(message)
        self.denied = denied


class Account:
    """The account behind boto3's credentials, in their region."""

    def __init__(self, session: Any = None):
        self.session = session or aws_session()
        self._clients: dict[str, Any] = {}

    @property
    def region(self) -> str:
        return str(self.session.region_name)

    def client(self, service: str) -> Any:
        """A client for ``service``; ConfigError (naming what to set) without region or
        credentials."""
        if service not in self._clients:
            self._clients[service] = make_client(self.session, service, _CONFIG)
        return self._clients[service]

    @cached_property
    def caller(self) -> dict[str, str]:
        """``Account`` and ``Arn`` of whoever the credentials belong to (STS, always allowed)."""
        return self.call("sts", "get_caller_identity")

    @property
    def id(self) -> str:
        return self.caller["Account"]

    @property
    def partition(self) -> str:
        """``aws``, or ``aws-cn`` / ``aws-us-gov``, read off the caller's ARN."""
        return self.caller["Arn"].split(":")[1]

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.id}:{resource}"

    def call(self, service: str, operation: str, **params: Any) -> Any:
        """Run one API call; AwsError with AWS's own words if it fails."""
        return self._invoke(service, operation, params, missing_ok=False)

    def find(self, service: str, operation: str, **params: Any) -> Any | None:
        """``call``, but None where AWS answers that the resource does not exist."""
        return self._invoke(service, operation, params, missing_ok=True)

    def _invoke(self, service: str, operation: str, params: dict[str, Any], *,
                missing_ok: bool) -> Any:
        try:
            return getattr(self.client(service), operation)(**params)
        except ClientError as error:
            if missing_ok and _code(error) in _MISSING:
                return None
            raise _aws_error(service, operation, error) from None
        except BotoCoreError as error:
            raise AwsError(f"{_action(service, operation)}: {error}") from None


def find_subscription(account: Account, topic_arn: str, endpoint: str) -> dict[str, str] | None:
    """The subscription of ``endpoint`` to the topic, with its attributes (strings, as SNS
    gives them), or None (also when the topic does not exist). A pending subscription has no
    ARN to ask about: it reads as ``PendingConfirmation``."""
    token: dict[str, str] = {}
    while True:
        page = account.find("sns", "list_subscriptions_by_topic", TopicArn=topic_arn, **token)
        for item in (page or {}).get("Subscriptions", []):
            if item.get("Endpoint") != endpoint:
                continue
            arn = item.get("SubscriptionArn", "")
            if not arn.startswith("arn:"):
                return {**item, "PendingConfirmation": "true"}
            attributes = account.find("sns", "get_subscription_attributes",
                                      SubscriptionArn=arn)
            return {**item, **(attributes or {}).get("Attributes", {})}
        next_token = (page or {}).get("NextToken")
        if not next_token:
            return None
        token = {"NextToken": next_token}


def _aws_error(service: str, operation: str, error: ClientError) -> AwsError:
    code = _code(error)
    words = str(error.response.get("Error", {}).get("Message", "")) or code
    action = _action(service, operation)
    if code in _DENIED or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
        return AwsError(f"not allowed to {action} ({words}): allow it to these credentials "
                        "(`newsletter ses policy --setup` prints the policy)", denied=True)
    return AwsError(f"{action} failed: {code}: {words}")


def _action(service: str, operation: str) -> str:
    """``ses:GetEmailIdentity`` for (sesv2, get_email_identity): the name IAM policies use."""
    return f"{_IAM_PREFIX.get(service, service)}:" + operation.title().replace("_", "")


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
