# crypto/cert: certificates, identity bundles and device key files, and the
# fuzz target of their parsers.
bk_add_test(crypto_cert SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_cert.c)
bk_add_fuzz(cert ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_cert.c)
