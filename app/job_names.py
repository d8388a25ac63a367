"""The job functions of app/jobs.py by the dotted name a job queue stores.

Domain and engine code enqueue by these names, so they never import app.jobs (which imports
them): a unit test checks that each names a function there.
"""
FIRE_TIMERS = "app.jobs.fire_timers"  # one instance's (wake-ups scheduled before the alarms)
FIRE_DUE_TIMERS = "app.jobs.fire_due_timers"
START_CHAT = "app.jobs.start_chat_lifecycle"
DRAIN_OPERATOR = "app.jobs.drain_operator"
WITHDRAW_OFFERS = "app.jobs.withdraw_offers"
DELIVER_MESSAGE = "app.jobs.deliver_message"
FETCH_ATTACHMENT = "app.jobs.fetch_attachment"
ACKNOWLEDGE = "app.jobs.acknowledge"
NAME_CONTACT = "app.jobs.name_contact"
