# Fuzz targets registered here (the others sit with their modules' tests):
# the configuration loader. tests/fuzz/run.sh runs every target with libFuzzer.
bk_add_fuzz(config ${CMAKE_CURRENT_LIST_DIR}/fuzz_config.c)
