"""Status match: recognising a member's tier in one program in another, through the
coalition tier ladder."""
