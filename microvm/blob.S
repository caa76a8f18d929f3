/* SPDX-License-Identifier: MIT */
/* The flat guest image, linked into the VMM so no file has to be found at run time. */
	.section .rodata
	.balign 4096
	.globl sc_guest_image, sc_guest_image_end
sc_guest_image:
	.incbin GUEST_BIN
sc_guest_image_end:

	.section .note.GNU-stack, "", @progbits
