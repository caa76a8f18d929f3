/* SPDX-License-Identifier: MIT */
/*
 * Guest entry: the VMM starts each vCPU at CPL3 in long mode with its own
 * rsp and its number in rdi (guest_main's argument); call main, then say done.
 */
	.section .text.entry, "ax"
	.globl _start
_start:
	call	guest_main
1:	movw	$0x500, %dx		/* SC_VM_PORT_DONE */
	outb	%al, %dx
	jmp	1b

	.section .note.GNU-stack, "", @progbits
