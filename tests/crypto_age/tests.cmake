# age v1: the C2SP testkit, unit tests, interoperability with the age CLI.
bk_add_test(crypto_age_testkit SOURCES ${CMAKE_CURRENT_LIST_DIR}/testkit.c
  LIBS PkgConfig::ZLIB PkgConfig::SODIUM)
bk_add_test(crypto_age SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_age.c LIBS PkgConfig::SODIUM)

# The driver the interoperability test and tests/bench/crypto.sh use.
add_executable(bk-age-tool ${CMAKE_CURRENT_LIST_DIR}/age_tool.c)
target_include_directories(bk-age-tool PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bk-age-tool PRIVATE backup_static)
# Minutes on a busy machine: every `age -p` file costs an scrypt at 2^18.
bk_add_script_test(crypto_age_interop ${CMAKE_CURRENT_LIST_DIR}/interop.sh LABELS long TIMEOUT 900)
set_property(TEST crypto_age_interop APPEND PROPERTY ENVIRONMENT
  "BK_AGE_TOOL=$<TARGET_FILE:bk-age-tool>")
bk_add_fuzz(age_header ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_age_header.c)
