# The benchmarks themselves are run by tests/bench/run.sh, not by ctest (they
# measure, they take minutes, and the machine may be shared). ctest checks
# how run.sh judges a table of figures: targets met, below, the --check alarm.
bk_add_script_test(bench_table ${CMAKE_CURRENT_LIST_DIR}/table_test.sh TIMEOUT 60)
