"""Every Slack action id and view callback id, defined once."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    ADVANCE = "deal_advance"
    WON = "deal_won"
    LOST = "deal_lost"
    NOTE = "deal_note"
    EDIT = "deal_edit"
    SHOW = "deal_show"
    REOPEN = "deal_reopen"
    SNOOZE = "deal_snooze"


class View(StrEnum):
    NEW_DEAL = "deal_new"
    EDIT_DEAL = "deal_edit"
    NOTE = "deal_note"
    LOST = "deal_lost"
    CRITERIA = "deal_criteria"
    SNOOZE = "deal_snooze"
    SETTINGS = "funnel_settings"
    STAGES = "funnel_stages"


class Field(StrEnum):
    """Block ids of modal inputs; each input's action id is the same string."""

    NAME = "name"
    AMOUNT = "amount"
    OWNER = "owner"
    STAGE = "stage"
    SOURCE = "source"
    CLOSE = "close"
    NEXT_STEP = "next_step"
    NEXT_DUE = "next_due"
    NOTE = "note"
    REASON = "reason"
    CRITERIA = "criteria"
    UNTIL = "until"
    REPORT_CHANNEL = "report_channel"
    WEEKLY_DAY = "weekly_day"
    WEEKLY_TIME = "weekly_time"
    NUDGE_HOUR = "nudge_hour"
    TIMEZONE = "timezone"
    LANGUAGE = "language"
    CURRENCY = "currency"
    MANAGERS = "managers"
    MANAGER_GROUP = "manager_group"
    STAGE_DEFINITION = "stage_definition"
    MOVE_TO = "move_to"
