"""Fault schedules for the emulator (`fl-crb emulate --faults FILE`).

`schedule` reads and checks a schedule file against the run it is meant for; `inject`
applies its events to the running network and parties at their times, undoes them on
time and on teardown, and records what each did; `accounting` checks after the run that
no task and no acknowledged upload went missing.
"""
