bk_add_test(crypto_noise SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_noise.c LIBS PkgConfig::SODIUM)
bk_add_test(crypto_noise_vectors SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_noise_vectors.c
  LIBS PkgConfig::JANSSON)
bk_add_fuzz(noise_initiator ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_noise_initiator.c)
bk_add_fuzz(noise_responder ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_noise_responder.c)
