"""hookgate worker: signs and delivers webhooks with arq, retrying on a schedule."""
