"""The MQTT side: the link, topics, contracts, messages in and out, household rules."""
