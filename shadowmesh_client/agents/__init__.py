"""The spec's three agents (spec "AI Integration Architecture"; issue 16; docs/agents.md). All offline.

    auditor.py    SecurityAuditor: streaming anomaly detection (median + MAD) over the daemons' signals
    optimizer.py  relay choice (RTT, loss, load, price), k-median relay placement, buffer sizes from BDP
    assistant.py  configuration assistant: doctor checks with fixes, config suggestions, log troubleshooting,
                  config review, Terraform templates
    llm.py        optional plain-language summary from an OpenAI-compatible endpoint (off by default)

auditor and optimizer are pure (no I/O, no clock). May import: config, chain, identity, rewards.onchain,
errors (assistant only).
"""
