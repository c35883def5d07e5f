"""The AWS side of a newsletter: what ``newsletter ses setup`` creates and ``ses doctor`` checks.

An SES identity with Easy DKIM, a configuration set whose event destination publishes bounces,
complaints and deliveries (opens and clicks with tracking) to an SNS topic, the topic's way to
us (the ``/webhooks/ses`` subscription or an SQS queue with a dead-letter queue), and the DNS
records that make the mail pass SPF, DKIM and DMARC. boto3 is imported here, as under
``transports/``: the rest of the package never talks to AWS.
"""
