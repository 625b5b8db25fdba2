# Thin wrappers over dev.sh (which also works where make is not installed).
.PHONY: demo test test-fast lab bench setup clean
demo:
	@bash dev.sh demo
test:
	@bash dev.sh test
test-fast:
	@bash dev.sh test-fast
lab:
	@bash dev.sh lab
bench:
	@bash dev.sh bench
setup:
	@bash dev.sh setup
clean:
	rm -rf artlab-demo .pytest_cache build dist *.egg-info
