"""The policies that join the pieces: who may publish to the topic and send to the queue, and
the least-privilege IAM policies ``newsletter ses policy`` prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from newsletter.aws.resources import Names
from newsletter.config import Settings

Arn = Callable[[str, str], str]  # (service, resource) → ARN


def topic_statement(topic_arn: str, account: str, configuration_set_arn: str) -> dict[str, Any]:
    """Lets SES publish this configuration set's events to the topic, and nothing else: the
    conditions stop another account's SES (the confused deputy) from using it."""
    return {
        "Sid": "AllowSesEventPublishing",
        "Effect": "Allow",
        "Principal": {"Service": "ses.amazonaws.com"},
        "Action": "SNS:Publish",
        "Resource": topic_arn,
        "Condition": {"StringEquals": {"AWS:SourceAccount": account},
                      "ArnLike": {"AWS:SourceArn": configuration_set_arn}},
    }


def queue_statement(queue_arn: str, topic_arn: str) -> dict[str, Any]:
    """Lets the topic, and only it, put messages on the queue."""
    return {
        "Sid": "AllowSesEventsTopic",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
    }


def with_statement(policy_json: str | None, statement: dict[str, Any]) -> str:
    """The policy with ``statement`` added (replacing one of the same Sid): what else it
    allows is kept."""
    policy = json.loads(policy_json) if policy_json else {"Version": "2012-10-17",
                                                          "Statement": []}
    kept = [s for s in _statements(policy) if s.get("Sid") != statement["Sid"]]
    return json.dumps({**policy, "Statement": [*kept, statement]})


def allows(policy_json: str | None, service: str, action: str) -> bool:
    """Whether a resource policy has an Allow statement for ``service``'s principal on
    ``action`` (or a wildcard covering it). Conditions are not judged: a narrower one than
    ours is the owner's choice."""
    if not policy_json:
        return False
    try:
        policy = json.loads(policy_json)
    except ValueError:
        return False
    wanted = action.lower()
    for statement in _statements(policy):
        principal = statement.get("Principal")
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        actions = statement.get("Action", [])
        if (statement.get("Effect") == "Allow"
                and service in _listed(services)
                and any(_covers(pattern.lower(), wanted) for pattern in _listed(actions))):
            return True
    return False


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    statements = policy.get("Statement", [])
    return [s for s in _listed(statements) if isinstance(s, dict)]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _covers(pattern: str, action: str) -> bool:
    return pattern == action or pattern == "*" or (
        pattern.endswith("*") and action.startswith(pattern[:-1]))


# ---------------------------------------------------------------- IAM policies


def sender_policy(names: Names, arn: Arn, settings: Settings) -> dict[str, Any]:
    """What sending needs: SendEmail from the identity through the configuration set, the
    account's quota, and, with a queue, receiving and deleting its messages. ``arn(service,
    resource)`` builds ARNs (``*`` where the account is not known)."""
    statements: list[dict[str, Any]] = [
        {"Sid": "SendTheNewsletter", "Effect": "Allow",
         "Action": ["ses:SendEmail", "ses:SendRawEmail"],
         "Resource": [arn("ses", f"identity/{names.domain}"),
                      arn("ses", f"identity/{names.sender}"),
                      arn("ses", f"configuration-set/{names.configuration_set}")]},
        {"Sid": "ReadTheSendingQuota", "Effect": "Allow",
         "Action": ["ses:GetAccount", "ses:GetSendQuota"], "Resource": "*"},
    ]
    if settings.sqs_queue_url:
        statements.append(
            {"Sid": "ReceiveSesEvents", "Effect": "Allow",
             "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:DeleteMessageBatch"],
             "Resource": arn("sqs", names.queue)})
    return {"Version": "2012-10-17", "Statement": statements}


# What setup calls, and doctor reads: each action with the resources it acts on.
_SETUP_ACTIONS = {
    "ses": ["ses:GetAccount", "ses:GetEmailIdentity", "ses:CreateEmailIdentity",
            "ses:PutEmailIdentityMailFromAttributes", "ses:GetConfigurationSet",
            "ses:CreateConfigurationSet", "ses:GetConfigurationSetEventDestinations",
            "ses:CreateConfigurationSetEventDestination",
            "ses:UpdateConfigurationSetEventDestination", "ses:TagResource"],
    "sns": ["sns:CreateTopic", "sns:GetTopicAttributes", "sns:SetTopicAttributes",
            "sns:Subscribe", "sns:ListSubscriptionsByTopic", "sns:GetSubscriptionAttributes",
            "sns:SetSubscriptionAttributes",
            "sns:TagResource"],
    "sqs": ["sqs:CreateQueue", "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
            "sqs:SetQueueAttributes", "sqs:TagQueue"],
}


def setup_policy(names: Names, arn: Arn) -> dict[str, Any]:
    """What ``ses setup`` and ``ses doctor`` need, on this newsletter's resources only (the
    account-wide reads, GetAccount and GetSendQuota, take no resource)."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "SetUpSes", "Effect": "Allow", "Action": _SETUP_ACTIONS["ses"],
         "Resource": [arn("ses", f"identity/{names.domain}"),
                      arn("ses", f"identity/{names.sender}"),
                      arn("ses", f"configuration-set/{names.configuration_set}")]},
        {"Sid": "ReadTheAccount", "Effect": "Allow", "Action": ["ses:GetAccount"],
         "Resource": "*"},
        {"Sid": "SetUpTheEventsTopic", "Effect": "Allow", "Action": _SETUP_ACTIONS["sns"],
         "Resource": arn("sns", names.topic)},
        {"Sid": "SetUpTheEventsQueue", "Effect": "Allow", "Action": _SETUP_ACTIONS["sqs"],
         "Resource": [arn("sqs", names.queue), arn("sqs", names.dead_letter_queue)]},
    ]}


def iam_policy(settings: Settings, *, for_setup: bool) -> tuple[dict[str, Any], str]:
    """The sender's (or with ``for_setup`` the set-up's) policy, with ARNs for the account and
    region of boto3's credentials; ``*`` for both where they are not known (and a note saying
    so)."""
    from newsletter.aws.account import Account, AwsError
    from newsletter.errors import ConfigError

    names = Names.of(settings)
    note = ""
    try:
        account = Account()
        account.caller  # noqa: B018 - asks STS who we are, or fails here
        arn: Arn = account.arn
    except (ConfigError, AwsError) as error:
        note = (f"(account and region unknown, {error}: the ARNs below use * for both; "
                "replace them with yours)")

        def arn(service: str, resource: str) -> str:
            return f"arn:aws:{service}:*:*:{resource}"

    policy = setup_policy(names, arn) if for_setup else sender_policy(names, arn, settings)
    return policy, note
