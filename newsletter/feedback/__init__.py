"""What comes back from SES: bounces, complaints and deliveries, and the SNS envelope they
arrive in."""
