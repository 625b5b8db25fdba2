# Thin wrappers over dev.sh (which also works where make is not installed).
.PHONY: demo test test-fast lab bench setup clean
demo:
	@bash dev.sh demo
test:
	@bash dev.sh test
test-fast:
	@bash dev.sh test-fast
# JupyterLab on working copies of the lessons (~/artlab-lessons); options: make lab ARGS="--no-browser --port 8898"
lab:
	@bash dev.sh lab $(ARGS)
bench:
	@bash dev.sh bench
setup:
	@bash dev.sh setup
clean:
	rm -rf artlab-demo .pytest_cache build dist *.egg-info
