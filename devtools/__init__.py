"""Development tools: the local stack and the ADLS Gen2 emulator. Never imported by the app."""
