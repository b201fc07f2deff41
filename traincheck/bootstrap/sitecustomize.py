from traincheck.tracer.bootstrap import initialize

initialize()
