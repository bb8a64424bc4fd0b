# crypto/minisign: unit tests, the driver program for the interoperability
# tests against minisign(1), and the fuzz target of the key and signature parsers.
add_executable(bk-sign-tool ${CMAKE_CURRENT_LIST_DIR}/sign_tool.c)
target_include_directories(bk-sign-tool PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bk-sign-tool PRIVATE backup_static)

bk_add_test(crypto_sign SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_sign.c)

bk_add_script_test(crypto_minisign_interop ${CMAKE_CURRENT_LIST_DIR}/interop.sh TIMEOUT 120)
set_property(TEST crypto_minisign_interop APPEND PROPERTY ENVIRONMENT
  "BK_SIGN_TOOL=$<TARGET_FILE:bk-sign-tool>")
bk_add_script_test(crypto_minisign_interop_encrypted
  ${CMAKE_CURRENT_LIST_DIR}/interop_encrypted.sh LABELS long TIMEOUT 600)
set_property(TEST crypto_minisign_interop_encrypted APPEND PROPERTY ENVIRONMENT
  "BK_SIGN_TOOL=$<TARGET_FILE:bk-sign-tool>")

bk_add_fuzz(minisign ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_minisign.c)
