"""Process settings from environment variables: secrets and endpoints.

The YAML file (config.py) describes *what* the bot manages; these say *where*
things are and hold the secrets, so one image runs in every environment.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///chatops.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    config_path: str = Field(default="chatops.yaml", alias="CHATOPS_CONFIG")
    database_url: str = Field(default=DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    # PostgreSQL schema to keep the bot's tables in (search_path); default public.
    database_schema: str | None = Field(default=None, alias="CHATOPS_DB_SCHEMA")
    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_api_url: str = Field(default=DEFAULT_SLACK_API_URL, alias="SLACK_API_URL")
    webhook_token: SecretStr | None = Field(default=None, alias="CHATOPS_WEBHOOK_TOKEN")
    # Bearer token for GET /api/v1/...; the webhook token when unset.
    api_token: SecretStr | None = Field(default=None, alias="CHATOPS_API_TOKEN")
    kubeconfig: str | None = Field(default=None, alias="KUBECONFIG")
    prometheus_url: str | None = Field(default=None, alias="PROMETHEUS_URL")
    github_api_url: str = Field(default="https://api.github.com", alias="GITHUB_API_URL")
    github_token: SecretStr | None = Field(default=None, alias="GITHUB_TOKEN")
    # Postmortems are published here (Cloud: JIRA_USER is the account's email
    # and JIRA_TOKEN an API token; Server without JIRA_USER: a personal token).
    jira_url: str | None = Field(default=None, alias="JIRA_URL")
    jira_user: str | None = Field(default=None, alias="JIRA_USER")
    jira_token: SecretStr | None = Field(default=None, alias="JIRA_TOKEN")
    # Where people can follow a deploy (shown in GitHub Deployment statuses).
    public_url: str | None = Field(default=None, alias="CHATOPS_PUBLIC_URL")
    otlp_endpoint: str | None = Field(default=None, alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    log_level: str = Field(default="INFO", alias="CHATOPS_LOG_LEVEL")
    # Identifies this process in leases (scheduler jobs, outbox channels).
    instance_id: str | None = Field(default=None, alias="CHATOPS_INSTANCE_ID")
    # How long a job stays claimed by a process that stopped answering; after
    # a crash, its jobs wait this long before another process takes them.
    job_lease_seconds: float = Field(default=30.0, gt=1.0, alias="CHATOPS_JOB_LEASE_SECONDS")

    def secret_values(self) -> list[str]:
        """Every secret this process knows, so the log filter can mask them."""
        secrets = [self.slack_bot_token, self.slack_app_token, self.slack_signing_secret,
                   self.webhook_token, self.github_token, self.api_token, self.jira_token]
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
