"""Every table of the bot, imported in one place so the metadata Alembic
compares against is complete."""

from sqlmodel import SQLModel

import bot.core.models
import bot.deploys.models
import bot.incidents.models
import bot.paging.models
import bot.postmortems.models
import bot.runbooks.models  # noqa: F401

metadata = SQLModel.metadata
