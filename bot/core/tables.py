"""Every table of the bot, imported in one place so the metadata Alembic
compares against is complete."""

from sqlmodel import SQLModel

import bot.core.models  # noqa: F401  (registers the tables)

metadata = SQLModel.metadata
