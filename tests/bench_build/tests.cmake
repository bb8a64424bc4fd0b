# Benchmark programs (run by tests/bench/*.sh, not by ctest).
add_executable(bk-bench-channel ${CMAKE_SOURCE_DIR}/tests/bench/channel_bench.c)
target_include_directories(bk-bench-channel PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bk-bench-channel PRIVATE bk_testlib)
