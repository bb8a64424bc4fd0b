# Device URIs, socket transports, framing and the message codec.
bk_add_test(device_wire SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_device_wire.c TIMEOUT 120)
bk_add_fuzz(frame ${CMAKE_CURRENT_LIST_DIR}/../fuzz/fuzz_frame.c)
bk_add_fuzz(message ${CMAKE_CURRENT_LIST_DIR}/../fuzz/fuzz_message.c)
