/* SPDX-License-Identifier: MIT */
/* Guest entry: the VMM starts us at CPL3 in long mode with rsp set; call main, then say done. */
	.section .text.entry, "ax"
	.globl _start
_start:
	movq	$0x100000, %rsp
	call	guest_main
1:	movw	$0x500, %dx		/* SC_VM_PORT_DONE */
	outb	%al, %dx
	jmp	1b

	.section .note.GNU-stack, "", @progbits
